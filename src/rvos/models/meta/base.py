"""The model contract: what every method provides, so that the engine, the API, the CLI, ``rvos serve`` and
``rvos info`` work for any of them without naming one.

A method subclasses :class:`RvosModel` and provides:

* ``config_class``: the dataclass of its ``model:`` config, every hyperparameter documented where declared.
* :meth:`~RvosModel.prepare_text`: sentences -> :class:`TextInputs` (token ids and masks; DsHmp adds its static /
  motion cue maps). Runs in the training loop and in inference, never in the data loader.
* :meth:`~RvosModel.forward` and :meth:`~RvosModel.loss` on a :class:`ClipBatch` (and
  :meth:`~RvosModel.prepare_training` with the training split, for a loss that needs the split's structure); :meth:`~RvosModel.postprocess`
  applies the method's selection rule (a union of queries over a threshold, or the top-1 query) to the forward
  outputs, giving per clip the mask logits and scores of each frame.
* :meth:`~RvosModel.parameter_group`: which learning-rate group a parameter belongs to (head, image backbone, text
  encoder).
* :meth:`~RvosModel.start_session`: streaming inference over a video in windows (:class:`InferenceSession`):
  ``observe`` every window in order (the method keeps the compact state it needs, e.g. frame queries), ``decode``
  once for the whole video, then ``predict`` each window's masks and scores with the method's selection rule.
  For a clip that fits in one window, ``predict`` gives what ``postprocess(forward(...))`` gives.
* :meth:`~RvosModel.describe`: the method's own facts per part (layers, queries), which :func:`describe_model`
  puts beside a generic parameter count of every top-level part.

Masks leave a method as logits at ``mask_stride`` of the padded input (the input padded at the bottom and right to
a multiple of ``size_divisibility``); the :class:`~rvos.engine.inference.Predictor` brings them to the video's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class TextInputs(dict):
    """A method's prepared sentences: a mapping of tensors whose first dimension is the sentence."""

    def to(self, device) -> "TextInputs":
        return TextInputs({k: v.to(device) for k, v in self.items()})

    def take(self, index) -> "TextInputs":
        """The sentences at ``index`` (an int keeps the sentence dimension, with size 1)."""
        index = [index] if isinstance(index, int) else index
        return TextInputs({k: v[index] for k, v in self.items()})


@dataclass
class TrackClips:
    """Clips read for a track grounding head alone (``data.track_clips``): frames and annotated objects, no sentence;
    the head reads their objects' exact tracks with every sentence of their videos."""

    frames: torch.Tensor  # (N, T, 3, H, W) float in [0, 1], padded at the bottom / right to the largest
    instances: list[torch.Tensor]  # per clip (M_n, T, H, W) bool: every annotated object visible in the clip
    instance_ids: list[tuple[str, ...]]  # per clip (M_n,): the objects' mask keys
    video_ids: list[str]
    flipped: list[bool]

    def to(self, device) -> "TrackClips":
        return TrackClips(self.frames.to(device, non_blocking=True),
                          [t.to(device, non_blocking=True) for t in self.instances], self.instance_ids,
                          self.video_ids, self.flipped)


@dataclass
class ClipBatch:
    """B training clips, each with one sentence."""

    frames: torch.Tensor  # (B, T, 3, H, W) float in [0, 1], padded at the bottom / right to the batch's largest
    text: TextInputs  # the B sentences, prepared by the model
    sentences: list[str]
    instances: list[torch.Tensor]  # per clip (M_b, T, H, W) bool: every annotated object visible in the clip
    referred: list[torch.Tensor]  # per clip (M_b,) bool: the objects the sentence refers to
    video_ids: list[str]
    expression_ids: list[str]
    iteration: int = 0  # the training step the batch belongs to (for schedules inside a method's loss)
    # per clip (M_b,): the instances' mask keys (MeViS anno_ids), which the split's other expressions refer to
    instance_ids: list[tuple[str, ...]] | None = None
    # per clip: whether it was flipped (left and right swapped in its frames and sentence, but not in the split's
    # other sentences about its video, which a method that reads them must swap too)
    flipped: list[bool] | None = None
    track_clips: TrackClips | None = None  # more clips for a track grounding head (``data.track_clips``)

    @property
    def targets(self) -> list[torch.Tensor]:
        """Per clip (N_b, T, H, W) bool: the masks of the referred objects."""
        return [inst[ref] for inst, ref in zip(self.instances, self.referred)]

    def loss_targets(self, instances: bool) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Per clip the target masks and whether the sentence refers to each: every annotated object with its
        flag (``instances``), or the referred objects alone (flags None: all referred)."""
        return (self.instances, self.referred) if instances else (self.targets, None)

    def to(self, device) -> "ClipBatch":
        move = lambda ts: [t.to(device, non_blocking=True) for t in ts]  # noqa: E731
        return ClipBatch(self.frames.to(device, non_blocking=True), self.text.to(device), self.sentences,
                         move(self.instances), move(self.referred), self.video_ids, self.expression_ids,
                         self.iteration, self.instance_ids, self.flipped,
                         None if self.track_clips is None else self.track_clips.to(device))


NO_MASK = -1e4  # the logit of a query left out of a frame's union (finite: upsampling mixes it with its neighbours)


@dataclass
class ClipMasks:
    """One clip's output for its sentence: the selected masks of every frame and its score. A frame's mask is the
    union of its K selected masks, taken after they are brought to the video's size (:meth:`masks`), as the
    official implementations upsample each query's mask before the union."""

    logits: torch.Tensor  # (T, K, h, w) at ``mask_stride`` of the padded input; > 0 is foreground
    scores: torch.Tensor  # (T,) referring probability of what the frame's mask shows (0 where it shows nothing)

    @property
    def union(self) -> torch.Tensor:
        """(T, h, w): the union's logits at the model's stride (the largest of the K)."""
        return self.logits.max(1).values

    def masks(self, stride: int, input_size: tuple[int, int], out_size: tuple[int, int]) -> torch.Tensor:
        """(T, H_out, W_out) bool: each of the K masks upsampled (:func:`upsample_masks`), then their union."""
        return torch.stack([(upsample_masks(frame, stride, input_size, out_size) > 0).any(0) for frame in self.logits])


class InferenceSession:
    """Streaming inference of K sentences over one video. Call :meth:`observe` on every window in order, then
    :meth:`decode` once, then :meth:`predict` on each window (in any order)."""

    def observe(self, frames: torch.Tensor, start: int) -> None:
        """frames (n, 3, H, W) in [0, 1], padded; ``start`` is the index of the window's first frame."""
        raise NotImplementedError

    def decode(self) -> None:
        """Everything that needs the whole video (after the last :meth:`observe`)."""
        raise NotImplementedError

    def predict(self, frames: torch.Tensor, start: int) -> list[ClipMasks]:
        """The window's selected masks and scores, one :class:`ClipMasks` (over the window's n frames) per
        sentence."""
        raise NotImplementedError

    def candidates(self, frames: torch.Tensor, start: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """What the selection rule chooses from, per sentence: every query's referring probability (n, Q) and
        mask logits (n, Q, h, w) in the window. For diagnosis (the best query by score, or by its overlap with
        the answer); a method without a query set need not provide it."""
        raise NotImplementedError


class LastWindow:
    """What a session encoded for the window it observed last, kept for its second pass: a video that fits in one
    window is encoded once."""

    def __init__(self):
        self.start, self.value = None, None

    def keep(self, start: int, value):
        self.start, self.value = start, value
        return value

    def get(self, start: int, encode):
        """The kept value when ``start`` is the kept window's, else ``encode()``."""
        return self.value if self.start == start else encode()


class RvosModel(nn.Module):
    """The base class of every method (see the module documentation)."""

    config_class: type = None  # the dataclass of ``model:``
    mask_stride: int = 4  # masks are logits at this stride of the padded input
    size_divisibility: int = 32  # inputs are padded to a multiple of this
    # whether streaming in windows gives what encoding the whole video at once gives (False for a method whose
    # backbone mixes the frames of a window, such as a video Swin)
    window_invariant: bool = True
    # whether its training loss reads a batch's ``track_clips`` (``data.track_clips``: a track grounding head's)
    reads_track_clips: bool = False

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    # --------------------------------------------------------------------------------------------- text

    def prepare_text(self, sentences: list[str]) -> TextInputs:
        raise NotImplementedError

    def prepare_training(self, split) -> None:
        """Called by ``rvos train`` with the training split (:class:`~rvos.data.splits.ReferringSplit`) before the
        first step, for a method whose loss needs the split's structure (DsHmp's memory bank of expressions)."""

    def training_state(self) -> dict:
        """What the model keeps between training steps besides its weights and buffers (conv-CLIP's replay memory of
        tracks): saved with a checkpoint's optimizer state (tensors, numbers and strings in dicts and lists), so a
        resumed run continues as the uninterrupted one. None by default."""
        return {}

    def load_training_state(self, state: dict) -> None:
        """Restore what :meth:`training_state` saved (called after :meth:`prepare_training` when a run resumes)."""

    # --------------------------------------------------------------------------------------------- training

    def forward(self, batch: ClipBatch) -> dict:
        raise NotImplementedError

    def loss(self, outputs: dict, batch: ClipBatch) -> dict[str, torch.Tensor]:
        """Weighted loss terms; their sum is minimised. Each is a mean over clips of a per-clip value, so a batch
        split over processes or accumulation steps gives the loss of the whole batch."""
        raise NotImplementedError

    def postprocess(self, outputs: dict, score_threshold: float | None = None) -> list[ClipMasks]:
        """The method's selection rule on :meth:`forward`'s outputs: per clip, its masks and scores."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------------- optimizer

    def parameter_group(self, name: str) -> str:
        """"head", "backbone" (the image backbone) or "text" (the text encoder) for parameter ``name``; the
        optimizer gives each group its learning-rate multiplier."""
        return "head"

    # --------------------------------------------------------------------------------------------- inference

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        """Pad (..., H, W) at the bottom and right to a multiple of ``size_divisibility``."""
        d = self.size_divisibility
        h, w = images.shape[-2:]
        return F.pad(images, (0, (d - w % d) % d, 0, (d - h % d) % d))

    def padded_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (N, 3, H, W) padded as the model's forward pads them (:meth:`pad`, unless the model pads inside)."""
        return self.pad(frames)

    def start_session(self, text: TextInputs, score_threshold: float | None = None) -> InferenceSession:
        """A streaming session for the sentences of ``text`` over one video; ``score_threshold`` overrides the
        config's where the selection rule has one."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------------- reporting

    def describe(self) -> dict[str, dict]:
        """The method's facts (layers, queries, the backbone's name), keyed by top-level part."""
        return {}


def parameter_counts(module: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"parameters": total, "trainable": trainable, "frozen": total - trainable}


def describe_model(model: RvosModel) -> dict[str, dict]:
    """Per top-level part: parameters (trainable, frozen) and the method's facts about it; then the total."""
    facts = model.describe()
    report = {name: parameter_counts(child) | facts.get(name, {}) for name, child in model.named_children()
              if any(True for _ in child.parameters())}
    for name, extra in facts.items():  # facts about no module (e.g. the method's selection rule)
        report.setdefault(name, extra)
    report["total"] = parameter_counts(model)
    return report


def kept_queries(probs: torch.Tensor, threshold: float, keep_best: bool = False, count: int = 0) -> torch.Tensor:
    """The queries :func:`union_of_queries` keeps in each frame: probs (T, Q) -> (T, Q) bool. Those whose referring
    probability passes ``threshold`` (and, with ``keep_best``, the query of the highest mean probability in any case).
    With ``count``, how many objects the sentence refers to as the model reads it: one, the query of the highest mean
    probability alone; more, the ``count`` queries of the highest mean probability and every query over ``threshold``
    too (a plural seldom says how many: "the blue shapes"); queries of probability 0 (no candidates) are left out
    unless none is left."""
    keep = probs > threshold
    if count:
        mean = probs.mean(0)
        best = mean.argsort(descending=True)[:count]
        best = best[mean[best] > 0] if (mean[best] > 0).any() else best[:1]
        keep = keep if count > 1 else torch.zeros_like(keep)
        keep[:, best] = True
    elif keep_best:
        keep[:, probs.mean(0).argmax()] = True
    return keep


def union_of_queries(probs: torch.Tensor, mask_logits: torch.Tensor, threshold: float,
                     keep_best: bool = False, count: int = 0) -> ClipMasks:
    """The selection rule of methods that may name several objects: the union of the masks of the queries of
    :func:`kept_queries`. probs (T, Q); mask_logits (T, Q, h, w) -> per frame the kept queries' logits (the queries
    kept in some frame; :data:`NO_MASK` where a query is not kept in a frame, one such mask where none is kept at all)
    and the best kept probability among the queries that show something in the frame."""
    keep = kept_queries(probs, threshold, keep_best, count)  # (T, Q)
    kept = mask_logits.masked_fill(~keep[:, :, None, None], NO_MASK)
    present = (kept > 0).flatten(2).any(-1)  # (T, Q): kept and showing something
    columns = keep.any(0)
    kept = kept[:, columns] if columns.any() else kept[:, :1]
    return ClipMasks(kept, (probs * present).max(1).values)


def union_rule(threshold: float, track) -> str:
    """:func:`union_of_queries` in words, as a model's ``describe`` reports it (``track``: its
    :class:`~rvos.models.modules.track_grounding.TrackGroundingConfig`)."""
    if track.enabled and track.count:
        return (f"the likeliest query alone for a sentence read as naming one object; for one read as naming more (up "
                f"to {track.count} told apart), as many of the likeliest and every query with probability > {threshold}")
    return (f"union of queries with probability > {threshold}"
            + (", the best one kept in any case" if track.enabled and track.keep_best else ""))


def top_query(probs: torch.Tensor, mask_logits: torch.Tensor) -> ClipMasks:
    """The selection rule of one object per sentence: the query with the highest referring probability over the
    clip (probs (T, Q) summed over frames), its mask in every frame, scored by its probability where it shows
    something."""
    best = probs.sum(0).argmax()
    logits = mask_logits[:, best]
    return ClipMasks(logits[:, None], probs[:, best] * (logits > 0).flatten(1).any(1))


def upsample_masks(logits: torch.Tensor, stride: int, input_size: tuple[int, int],
                   out_size: tuple[int, int]) -> torch.Tensor:
    """logits (..., h, w) at ``stride`` of the padded input -> (..., H_out, W_out): upsampled by ``stride``,
    cropped to the unpadded ``input_size``, then resized to ``out_size`` (bilinear, as the official
    implementations post-process)."""
    lead = logits.shape[:-2]
    x = logits.reshape(-1, 1, *logits.shape[-2:]).float()
    if stride != 1:
        x = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    if tuple(x.shape[-2:]) != tuple(out_size):
        x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
    return x.reshape(*lead, *out_size)

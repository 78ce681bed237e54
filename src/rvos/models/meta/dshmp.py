"""DsHmp (CVPR 2024): decoupled static and hierarchical motion perception for referring video segmentation.

    sentence ─RoBERTa (frozen)─> words (768) ──────────────────────┐ resized (Linear, LayerNorm): words, sentence
             └ decoupling (verbs, adverbs) ─> static cues, motion cues (each + the sentence feature)
    frames, words ─multi-modal Swin (PWAM after each stage)─> res2..res5
    res2..res5 ─MSDeformAttn pixel decoder─> mask features, 3 encoded maps, the finest FPN map
    maps, words, static cues ─frame decoder (Mask2Former + bi-attention)─> per-frame queries, classes, masks
    frame queries, words, motion cues ─HMP, motion decoder─> clip queries: classes, mask embeddings (per clip)

Every stage before the motion decoder works on each frame alone (with the sentence), so a long video is encoded in
windows and only the frame queries are kept (:class:`DsHmpSession`); the motion decoder then reads the whole
video. In training the last ``frame_decoder.train_layers`` layers' frame queries each feed the motion decoder (as
separate groups, layer-major), which is supervised at every layer; at inference the last layer's alone, and the
last motion-decoder layer.

Losses (the official weights): per frame, Mask2Former's set loss on every frame-decoder prediction; per clip, the
same on every motion-decoder layer of every group; VITA's similarity of matched frame and clip embeddings; and the
contrastive loss of each clip's referred-object embedding against a memory bank of the training expressions
(:mod:`rvos.models.criterion.contrastive`), its weight ramped up linearly over the first iterations. A query's
two class logits (object, no object) are read as one referring score, their difference: the softmax probability
of "object" is its sigmoid, and the official two-way cross-entropy with the no-object weight is the binary
cross-entropy of :class:`~rvos.models.criterion.losses.SetCriterion` with that weight.

Output: on MeViS the union of the clip queries whose probability passes ``score_threshold`` (none: an empty mask);
``selection: top1`` takes the most probable query (the official rule on the other datasets).

With ``model.track.enabled`` (a CPU-size option, off in the paper config; :mod:`rvos.models.modules.track_grounding`)
the referring probability of a clip query is not its class score but track grounding's: a small head reads what the
query's masks cover over the clip (the colour under them, their place, size and shape, the steps of their centroid)
and scores it against the sentence's bag of token embeddings, trained on every sentence of the clip's video with a
replay memory of earlier clips, as conv-CLIP's tiny config does. The class scores are still trained and still match
the queries to the objects. With ``track.min_objectness`` they are trained as objectness instead (every matched query
is an object, referred or not: the track head refers), the queries under it are no candidates and their masks are
emptied, and with ``track.exclusive`` each cell of a frame is left to the object query of the highest logit there, as
a clip query's mask is its embedding's product with every pixel's feature and covers look-alikes at once. With
``split_blobs`` (inference only) each clip query's masks are cut into the tracks of their connected blobs
(:func:`~rvos.models.modules.track_grounding.blob_tracks`), and each such track is a candidate of its own, scored by
the track head: a query that covers two look-alikes becomes two tracks, each with one object's motion.
With ``frame_decoder.proposals`` (a CPU-size option) each frame's queries start at the peaks of a centre heatmap
learnt from the mask features, as conv-CLIP's tiny config's do (:mod:`rvos.models.modules.static_query_decoder`).
With those and ``track.link`` "objects" the track head's candidates are not the clip queries but the frame queries
linked over the clip into slots as conv-CLIP's tiny config links its own (:class:`ObjectLinker`: a query whose peak
passes ``track.min_objectness`` is an object in its frame, followed by its query, place, colour and mask), and the
chosen slots' frame masks are the output; the motion decoder is still trained, as the paper's, but no longer read.
With ``pixel_decoder.fine`` too, a small stem on the frames (conv-CLIP's :class:`FineStem`) is added to the mask
features upsampled to stride 2, so that those frame masks are at stride 2 (the heatmap and the clip masks stay at
stride 4).

Where rvos departs from the official code, on purpose: the frozen RoBERTa stays in inference mode in training
(the official model lets its dropout run); frames are padded before normalisation (black; the official pads the
normalised frames with zeros, the mean colour), which is the same on frames whose sides are multiples of 32; a
batch of several clips is several sentences (the official code decouples only the first clip's sentence and
supervises the contrastive loss of one clip per process).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rvos.data.expressions import ContrastiveIndex, contrastive_index
from rvos.errors import ConfigError
from rvos.models.backbones.hf_text import HFTextEncoder
from rvos.models.backbones.mm_swin import MultiModalSwin, load_swin_weights
from rvos.models.criterion.contrastive import MemoryBank
from rvos.models.criterion.losses import LossConfig, SetCriterion, per_frame_targets, similarity_loss
from rvos.models.meta.base import (NO_MASK, ClipBatch, ClipMasks, InferenceSession, LastWindow, RvosModel,
                                   TextInputs, top_query, union_of_queries, union_rule)
from rvos.models.modules.cues import FeatureResizer, cue_sets
from rvos.models.modules.deform_pixel_decoder import MSDeformPixelDecoder
from rvos.models.modules.motion_decoder import MotionDecoder
from rvos.models.modules.pixel_decoder import FineStem
from rvos.models.modules.proposals import LINK_UNIT, clip_centre_loss
from rvos.models.modules.query_init import ObjectLinker, reorder
from rvos.models.modules.static_query_decoder import StaticQueryDecoder
from rvos.models.modules.track_grounding import (COLOUR, QueryTracks, TrackGroundingConfig, blob_masks, blob_tracks,
                                                 check_query_tracks, exclusive_masks, object_counts, object_linker,
                                                 passing_candidates, slot_objectness, suppress_duplicates)
from rvos.text.decouple import ExpressionDecoupler, make_tagger

log = logging.getLogger(__name__)


@dataclass
class TextConfig:
    model: str = "roberta-base"  # transformers model: a folder, a bundled name, or a Hugging Face repo id
    pretrained: bool = True  # false: random weights (trained from scratch, or loaded from a whole checkpoint)
    frozen: bool = True
    max_tokens: int = 40
    # which words are motion cues: "spacy" (the official: en_core_web_sm's VERB and ADV), "lexicon" (a list of
    # motion words, rvos.text.decouple) or "none" (no decoupling: every word is both a static and a motion cue)
    decoupler: str = "spacy"
    spacy_model: str = "en_core_web_sm"
    cache_dir: str | None = None

    def __post_init__(self):
        if self.decoupler not in ("spacy", "lexicon", "none"):
            raise ValueError(f"model.text.decoupler: expected spacy, lexicon or none, got {self.decoupler!r}")


@dataclass
class SwinConfig:
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int = 7
    drop_path_rate: float = 0.3
    mlp_ratio: float = 4.0
    # ImageNet weights of the Swin layers (the fusion layers start fresh): a file, or hf-hub:org/repo; null: random
    pretrained: str | None = None
    cache_dir: str | None = None


@dataclass
class PixelDecoderConfig:
    conv_dim: int = 256
    layers: int = 6
    heads: int = 8
    points: int = 4
    ffn: int = 1024
    norm_groups: int = 32
    # the width of a small stem on the frames (conv-CLIP's FineStem) whose map is added to the mask features upsampled
    # to stride 2, so that the frame queries' masks are at stride 2 (a CPU-size option, with track.link "objects",
    # whose output they are; 0: off, stride 4 as the paper's)
    fine: int = 0


@dataclass
class FrameDecoderConfig:
    layers: int = 9
    queries: int = 20
    heads: int = 8
    ffn: int = 2048
    train_layers: int = 3  # the last layers whose queries feed the motion decoder in training (1 at inference)
    # each frame's queries start at the peaks of a class-agnostic centre heatmap, learnt with loss.centre_weight
    # against every target object's centre (:mod:`rvos.models.modules.proposals`; a CPU-size option, off in the paper
    # config, as conv-CLIP's tiny config has it)
    proposals: bool = False


@dataclass
class MotionConfig:
    hmp_layers: int = 6  # Hierarchical Motion Perception blocks (0: none, the ablation without HMP)
    layers: int = 3
    queries: int = 10
    heads: int = 8
    ffn: int = 2048
    window: int = 8  # frames per HMP window


@dataclass
class ContrastiveConfig:
    weight: float = 0.3  # 0: no contrastive learning (the ablation)
    ramp_iterations: int = 2000  # the weight grows linearly from 0 over these iterations
    entries: int = 23051  # memory bank entries: the training split's expressions (MeViS train: 23,051)
    samples: int = 100  # bank entries each anchor is contrasted with (positives, then negatives)
    keep: float = 0.1  # an entry's update keeps this much of its old value


@dataclass
class DsHmpConfig:
    name: str = "dshmp"
    hidden_dim: int = 256
    mask_dim: int = 256
    score_threshold: float = 0.5
    selection: str = "union"  # "union" of queries over the threshold (MeViS) or the "top1" query
    size_divisibility: int = 32
    pixel_mean: tuple[float, ...] = (123.675, 116.280, 103.530)  # of 0..255 pixels
    pixel_std: tuple[float, ...] = (58.395, 57.120, 57.37)  # the official config's (57.37, not 57.375)
    text: TextConfig = field(default_factory=TextConfig)
    backbone: SwinConfig = field(default_factory=SwinConfig)
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)
    frame_decoder: FrameDecoderConfig = field(default_factory=FrameDecoderConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    loss: LossConfig = field(default_factory=lambda: LossConfig(similarity_weight=1.0))
    # track grounding of the clip queries (a CPU-size option; off in the paper config): min_objectness is the class
    # probability, then trained as objectness, and conv-CLIP's slot_weight and crop do not apply. With link "objects"
    # (and frame_decoder.proposals) the candidates are the frame queries linked into slots instead, as conv-CLIP's:
    # min_objectness, exclusive and duplicate_iou then concern the frame queries' peaks and masks, as its
    track: TrackGroundingConfig = field(default_factory=TrackGroundingConfig)
    # at inference, with track grounding, each clip query's masks cut into the tracks of their connected blobs, each
    # a candidate of its own (:func:`blob_tracks`; a CPU-size option): a clip query's mask is one embedding's product
    # with every frame's pixel features, so it covers look-alikes at once, and its track mixes their motions
    split_blobs: bool = False

    def __post_init__(self):
        if self.selection not in ("union", "top1"):
            raise ValueError(f"model.selection: expected union or top1, got {self.selection!r}")
        check_query_tracks(self.track, "DsHmp", allowed=("link", "duplicate_iou"))
        if self.split_blobs and not self.track.enabled:
            raise ValueError("model.split_blobs makes candidates for track grounding: set model.track.enabled")
        if self.track.enabled and self.track.link == "objects":
            if not self.frame_decoder.proposals:
                raise ValueError("model.track.link=objects links the frame queries at the proposals' peaks: set "
                                 "model.frame_decoder.proposals")
            if self.split_blobs:
                raise ValueError("model.split_blobs cuts the clip queries' masks, which model.track.link=objects does "
                                 "not read: unset one of them")
        if self.pixel_decoder.fine and not (self.track.enabled and self.track.link == "objects"):
            raise ValueError("model.pixel_decoder.fine puts the frame queries' masks at stride 2, which only "
                             "model.track.link=objects (with model.track.enabled) outputs: set it, or fine=0")
        if self.track.enabled and self.track.exclusive and not self.track.min_objectness:
            raise ValueError("model.track.exclusive shares each frame's cells among the object queries of "
                             "model.track.min_objectness: set it (e.g. 0.5)")

@dataclass
class EncodedText:
    raw: torch.Tensor  # (B, L, text width) the text encoder's words, read by the backbone's fusion
    padding: torch.Tensor  # (B, L) True at padding
    words: torch.Tensor  # (B, L, C) resized
    static: torch.Tensor  # (B, S, C) static cues (then the sentence feature)
    static_padding: torch.Tensor  # (B, S)
    motion: torch.Tensor  # (B, M, C) motion cues (then the sentence feature)
    motion_padding: torch.Tensor  # (B, M)

    def take(self, k: int, n: int = 1) -> "EncodedText":
        """Sentence ``k`` repeated ``n`` times."""
        return EncodedText(*(x[k:k + 1].expand(n, *x.shape[1:]) for x in vars(self).values()))

    def repeat(self, n: int) -> "EncodedText":
        """Every sentence ``n`` times, sentence-major (each frame of a clip its sentence)."""
        return EncodedText(*(x.repeat_interleave(n, dim=0) for x in vars(self).values()))

    def tile(self, n: int) -> "EncodedText":
        """The batch ``n`` times over (group ``l * B + b`` reads sentence ``b``)."""
        return EncodedText(*(x.repeat(n, *[1] * (x.dim() - 1)) for x in vars(self).values()))


class DsHmpModel(QueryTracks, RvosModel):
    config_class = DsHmpConfig
    mask_stride = 4

    def __init__(self, cfg: DsHmpConfig):
        super().__init__(cfg)
        self.size_divisibility = cfg.size_divisibility
        c = cfg.hidden_dim
        t = cfg.text
        self.text_encoder = HFTextEncoder(t.model, t.pretrained, t.frozen, t.max_tokens, t.cache_dir)
        self.resizer = FeatureResizer(self.text_encoder.width, c, 0.1)
        s = cfg.backbone
        self.backbone = MultiModalSwin(s.embed_dim, s.depths, s.heads, s.window, self.text_encoder.width,
                                       s.drop_path_rate, mlp_ratio=s.mlp_ratio)
        if s.pretrained:
            load_swin_weights(self.backbone, s.pretrained, s.cache_dir)
        p = cfg.pixel_decoder
        self.pixel_decoder = MSDeformPixelDecoder(self.backbone.channels, p.conv_dim, cfg.mask_dim, p.layers, p.heads,
                                                  p.points, p.ffn, 0.0, p.norm_groups)
        f = cfg.frame_decoder
        # with pixel_decoder.fine the frame decoder's masks are at stride 2 (its heatmap stays at stride 4)
        self.fine_stem = FineStem(p.fine, p.norm_groups) if p.fine else None
        self.fine_proj = nn.Conv2d(p.fine, cfg.mask_dim, 1) if p.fine else None
        if p.fine:  # starts at zero: the stride-2 mask features begin as the stride-4 ones upsampled
            nn.init.zeros_(self.fine_proj.weight)
            nn.init.zeros_(self.fine_proj.bias)
        self.mask_stride = self.track_stride = 2 if p.fine else 4
        self.frame_decoder = StaticQueryDecoder(p.conv_dim, c, f.queries, f.heads, f.ffn, f.layers, 1, cfg.mask_dim,
                                                proposals=f.proposals, proposal_pool=2 if p.fine else 1)
        m = cfg.motion
        self.motion_decoder = MotionDecoder(c, f.queries, m.queries, m.heads, m.ffn, m.hmp_layers, m.layers, m.window,
                                            1, cfg.mask_dim, p.conv_dim)
        k = cfg.contrastive
        self.memory_bank = MemoryBank(k.entries, c, k.samples, k.keep)
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(3, 1, 1) / 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(3, 1, 1) / 255, persistent=False)
        self.criterion = SetCriterion(cfg.loss)
        self._decoupler: ExpressionDecoupler | None = None  # made on first use (spaCy loads only when needed)
        self.index: ContrastiveIndex | None = None  # the training split's expressions (prepare_training)
        self.build_track_grounding(cfg.track)

    # ------------------------------------------------------------------------------------------- text

    @property
    def decoupler(self) -> ExpressionDecoupler:
        if self._decoupler is None:
            t = self.cfg.text
            self._decoupler = ExpressionDecoupler(self.text_encoder.tokenizer, make_tagger(t.decoupler, t.spacy_model),
                                                  t.max_tokens)
        return self._decoupler

    def prepare_text(self, sentences: list[str]) -> TextInputs:
        inputs = self.text_encoder.tokenize(sentences)
        if self.cfg.text.decoupler != "none":
            maps = self.decoupler(sentences)
            inputs["motion"], inputs["static"] = maps.motion, maps.static
        return inputs

    def encode_text(self, text: TextInputs) -> EncodedText:
        t = self.text_encoder.forward_text(TextInputs(input_ids=text["input_ids"], attention_mask=text["attention_mask"]))
        words, sentence = self.resizer(t.words), self.resizer(t.sentence)
        if self.cfg.text.decoupler == "none":
            static = motion = cue_sets(words, sentence, ~t.padding)
        else:
            static, motion = cue_sets(words, sentence, text["static"]), cue_sets(words, sentence, text["motion"])
        return EncodedText(t.words, t.padding, words, *static, *motion)

    # ------------------------------------------------------------------------------------------- stages

    def encode_frames(self, images: torch.Tensor, text: EncodedText, keep: int = 1):
        """images (N, 3, H, W) in [0, 1], padded; text per frame (N, ...) -> the frame decoder's outputs (with the
        last ``keep`` layers' queries; their masks at :attr:`mask_stride`) and the clip mask features (N, mask_dim,
        H/4, W/4)."""
        normalised = (images - self.pixel_mean) / self.pixel_std
        features = self.backbone(normalised, text.raw, text.padding)
        mask_features, maps, fine = self.pixel_decoder.forward_features(features)
        if self.fine_stem is not None:
            stem = self.fine_stem(normalised)
            mask_features = F.interpolate(mask_features, size=stem.shape[-2:], mode="bilinear",
                                          align_corners=False) + self.fine_proj(stem)
        frames = self.frame_decoder(maps, mask_features, text.words, text.padding, text.static, text.static_padding,
                                    keep=keep)
        return frames, self.motion_decoder.vita_mask_features(fine)

    def decode_clip(self, frame_queries: torch.Tensor, text: EncodedText) -> dict:
        """frame_queries (N, T, fQ, C), text per clip (N, ...) -> the motion decoder's outputs."""
        return self.motion_decoder(frame_queries, text.words, text.padding, text.motion, text.motion_padding)

    # ------------------------------------------------------------------------------------------- training

    def forward(self, batch: ClipBatch) -> dict:
        frames = batch.frames
        b, t_len = frames.shape[:2]
        text = self.encode_text(batch.text)
        keep = self.cfg.frame_decoder.train_layers if self.training else 1
        padded = self.pad(frames.flatten(0, 1))
        fo, clip_features = self.encode_frames(padded, text.repeat(t_len), keep)
        queries = fo["frame_queries"]  # (keep, B*T, fQ, C)
        queries = queries.reshape(keep * b, t_len, *queries.shape[2:])  # group l * B + b
        mo = self.decode_clip(queries, text.tile(keep))
        clip_features = clip_features.view(b, t_len, *clip_features.shape[1:]).repeat(keep, 1, 1, 1, 1)
        clip_masks = torch.einsum("dnqc,ntchw->dnqthw", mo["mask_embed"], clip_features)
        track = {}
        if self.links_objects:  # the frame queries linked into slots are the candidates
            images = self.descriptor_frames(padded)
            text = self.track_text(batch.text)
            track = self.frame_slots(fo, images, b, text)
            track |= {"slot_masks": track["slot_logits"] > 0, "mask_images": images.view(b, t_len, *images.shape[1:]),
                      "object_counts": object_counts(self.track_head, text)}
        elif self.track_head is not None:  # the clips read from the last frame layer, as the output reads them
            objectness = mo["logits"][-1, (keep - 1) * b:].detach().softmax(-1)[..., 0]  # (B, cQ)
            masks = self.object_masks(clip_masks[-1, (keep - 1) * b:], objectness)  # (B, cQ, T, h, w)
            images = self.descriptor_frames(padded)
            valid = None
            if self.cfg.split_blobs and not self.training:
                masks, objectness, valid, _ = self.blob_candidates(masks, objectness)
            text = self.track_text(batch.text)
            slot_tracks, logits = self.track_logits(images, masks, text)
            if valid is not None:  # a padding track is no candidate
                logits = logits.masked_fill(~valid, NO_MASK)
            track = {"track_logits": logits, "slot_tracks": slot_tracks, "slot_logits": masks, "slot_masks": masks > 0,
                     "objectness": objectness, "mask_images": images.view(b, t_len, *images.shape[1:]),
                     "object_counts": object_counts(self.track_head, text)}
        return track | {
            "frame_logits": fo["logits"],  # per prediction (B*T, fQ, 2)
            "frame_masks": fo["masks"],  # per prediction (B*T, fQ, h, w)
            "frame_objectness": fo["objectness"],  # (B*T, 1, h, w) with frame_decoder.proposals, else None
            "clip_logits": mo["logits"],  # (D, keep*B, cQ, 2)
            "clip_masks": clip_masks,
            "frame_embed": mo["frame_embed"],  # (keep*B, T, fQ, C)
            "clip_embed": mo["clip_embed"],  # (D, keep*B, cQ, C)
            "contrastive_embed": mo["contrastive_embed"],  # (keep*B, cQ, C)
            "groups": keep,
            "clip_length": t_len,
        }

    @property
    def objectness_scores(self) -> bool:
        """Whether the class score is trained as objectness (``track.min_objectness`` on the clip queries: the track
        head refers)."""
        return self.track_head is not None and self.cfg.track.min_objectness > 0 and not self.links_objects

    @property
    def links_objects(self) -> bool:
        """Whether the track head's candidates are the frame queries linked into slots as objects (``track.link``
        "objects"), not the clip queries."""
        return self.track_head is not None and self.cfg.track.link == "objects"

    def object_linker(self) -> ObjectLinker:
        """What links the frame queries on an object into slots with ``track.link`` "objects"."""
        return object_linker(self.cfg.track)

    def even_objectness_prior(self) -> None:
        """The centre heatmap's prior set to 0.5, for a model with random weights (:meth:`ProposalHead.even_prior`)."""
        self.frame_decoder.proposals.even_prior()

    def object_frame_masks(self, fo: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The frame decoder's outputs of N frames (with proposals) -> the last layer's mask logits (N, Q, h, w) with
        those of the queries on no object emptied (and with ``track.exclusive`` each cell left to the object query of
        the highest logit there), and the heatmap's probability at each query's peak (N, Q), 0 for a duplicate (with
        ``track.duplicate_iou``): a query is on an object where it passes ``track.min_objectness``."""
        masks, peaks, track = fo["masks"][-1], fo["peaks"], self.cfg.track
        if track.duplicate_iou:
            peaks = suppress_duplicates(peaks, masks, track.min_objectness, track.duplicate_iou)
        masks = masks.masked_fill((peaks < track.min_objectness)[..., None, None], NO_MASK)
        return (exclusive_masks(masks) if track.exclusive else masks), peaks

    def link_frame_queries(self, fo: dict, masks: torch.Tensor, peaks: torch.Tensor, descriptors: torch.Tensor,
                           clips: int, linker: ObjectLinker | None = None) -> torch.Tensor:
        """The frame decoder's outputs of ``clips`` clips (their frames in order), the masks and peaks of
        :meth:`object_frame_masks` and the masks' descriptors (N, Q, D) -> the slot order of each frame's queries
        (clips, T, Q), linked by their query, peak, mean colour and mask; ``linker``: one that linked the frames
        before (a session's), else a new one."""
        def clip(x: torch.Tensor) -> torch.Tensor:
            return x.view(clips, -1, *x.shape[1:])

        linker = linker if linker is not None else self.object_linker()
        return linker.link(clip(fo["frame_queries"][-1]), clip(fo["anchors"]) / LINK_UNIT,
                           clip(peaks >= self.cfg.track.min_objectness), clip(descriptors[..., COLOUR]),
                           clip(masks) > 0)

    def frame_slots(self, fo: dict, images: torch.Tensor, clips: int, sentences: torch.Tensor) -> dict:
        """The frame decoder's outputs of ``clips`` clips of T frames, the frames as the descriptors read them (N, 3,
        h', w') and the sentences (clips, width) -> the frame queries linked into slots: their masks (clips, Q, T, h,
        w), tracks and referring logits (:meth:`track_logits`'s), and objectness (clips, Q: the mean peak where the
        slot's mask shows)."""
        masks, peaks = self.object_frame_masks(fo)
        descriptors = self.mask_descriptors(images, masks)
        perms = self.link_frame_queries(fo, masks, peaks, descriptors, clips)
        descriptors = descriptors.view(clips, -1, *descriptors.shape[1:])
        slot_tracks, logits = self.descriptor_logits(reorder(descriptors, perms), sentences)
        masks = reorder(masks.view(clips, -1, *masks.shape[1:]), perms).transpose(1, 2)
        return {"slot_logits": masks, "slot_tracks": slot_tracks, "track_logits": logits,
                "objectness": slot_objectness(peaks.view(clips, -1, peaks.shape[-1]), perms, descriptors[..., 0])}

    def object_masks(self, masks: torch.Tensor, objectness: torch.Tensor) -> torch.Tensor:
        """The clip queries' mask logits (B, cQ, T, h, w) and class probabilities (B, cQ) -> with
        ``track.min_objectness`` those of the queries under it emptied (in a clip where some query passes), and with
        ``track.exclusive`` each frame's cells left to the query whose logit is the highest there."""
        if not self.objectness_scores:
            return masks
        passes = objectness >= self.cfg.track.min_objectness
        passes = passes | ~passes.any(1, keepdim=True)
        masks = masks.masked_fill(~passes[..., None, None, None], NO_MASK)
        if self.cfg.track.exclusive:
            b, q, t_len = masks.shape[:3]
            frames = exclusive_masks(masks.transpose(1, 2).flatten(0, 1))
            masks = frames.view(b, t_len, q, *masks.shape[-2:]).transpose(1, 2)
        return masks

    @staticmethod
    def blob_candidates(masks: torch.Tensor, objectness: torch.Tensor):
        """The clip queries' mask logits (B, cQ, T, h, w) and class probabilities (B, cQ) -> those of their blob tracks
        (:func:`blob_tracks`), each with its query's probability, padded to the most tracks of a clip with empty
        tracks; which tracks are real (B, K); and per clip its tracks (their queries, places)."""
        tracks = [blob_tracks(m) for m in masks]
        k = max(len(owners) for owners, _ in tracks)
        blobs = [blob_masks(m, owners, where) for m, (owners, where) in zip(masks, tracks)]
        masks = torch.stack([F.pad(m, (0, 0, 0, 0, 0, 0, 0, k - len(m)), value=NO_MASK) for m in blobs])
        objectness = torch.stack([F.pad(o[owners], (0, k - len(owners))) for o, (owners, _) in zip(objectness, tracks)])
        counts = torch.tensor([len(owners) for owners, _ in tracks], device=masks.device)
        return masks, objectness, torch.arange(k, device=masks.device)[None] < counts[:, None], tracks

    def candidate_probs(self, probs: torch.Tensor, objectness: torch.Tensor) -> torch.Tensor:
        """The track head's probabilities (B, K) with those of the candidates (queries or slots) whose objectness is
        under ``track.min_objectness`` set to 0 (in a clip where some candidate passes)."""
        if not (self.objectness_scores or self.links_objects):
            return probs
        return passing_candidates(probs, objectness, self.cfg.track.min_objectness)

    @staticmethod
    def referring_score(logits: torch.Tensor) -> torch.Tensor:
        """(..., 2) object / no-object logits -> (...) the logit of the object's softmax probability."""
        return logits[..., 0] - logits[..., 1]

    def prepare_training(self, split) -> None:
        super().prepare_training(split)  # track grounding's expressions
        self.index = contrastive_index(split)
        entries = self.cfg.contrastive.entries
        if len(self.index) > entries:
            raise ConfigError(f"the training split has {len(self.index)} expressions but the memory bank "
                              f"model.contrastive.entries holds {entries}: set model.contrastive.entries="
                              f"{len(self.index)}")
        if len(self.index) < entries and self.cfg.contrastive.weight > 0:
            log.warning("the memory bank has %d entries for %d training expressions: the rest are random negatives",
                        entries, len(self.index))

    def loss(self, outputs: dict, batch: ClipBatch) -> dict:
        cfg = self.cfg.loss
        t_len, groups = outputs["clip_length"], outputs["groups"]
        b = len(batch.sentences)
        targets, labels = batch.loss_targets(cfg.instance_targets)
        targets = [self.pad(t) for t in targets]
        frame_targets, frame_ids, frame_labels = per_frame_targets(targets, labels)
        losses: dict[str, torch.Tensor] = {}
        # with track.min_objectness the class is objectness: every matched query is an object (the track head refers)
        frame_classes = None if self.objectness_scores else frame_labels
        frame_matches = []
        for i, (logits, masks) in enumerate(zip(outputs["frame_logits"], outputs["frame_masks"])):
            part, matches = self.criterion(self.referring_score(logits), masks[:, :, None], frame_targets,
                                           labels=frame_classes)
            frame_matches.append(matches)
            losses |= {f"frame_{k}_{i}": v for k, v in part.items()}
        clip_targets = targets * groups
        clip_labels = None if labels is None else labels * groups
        clip_matches = None
        for i, (logits, masks) in enumerate(zip(outputs["clip_logits"], outputs["clip_masks"])):
            part, clip_matches = self.criterion(self.referring_score(logits), masks, clip_targets,
                                                labels=None if self.objectness_scores else clip_labels)
            losses |= {f"clip_{k}_{i}": v for k, v in part.items()}
        if outputs["frame_objectness"] is not None:  # the proposals' heatmap, against every target object's centre
            losses["centre"] = cfg.centre_weight * clip_centre_loss(outputs["frame_objectness"], targets, t_len)
        if cfg.similarity_weight:
            losses["similarity"] = cfg.similarity_weight * self._similarity(
                outputs, frame_matches[-groups:], frame_ids, clip_matches, b, t_len)
        k = self.cfg.contrastive
        if k.weight:
            ramp = min(1.0, batch.iteration / k.ramp_iterations) if k.ramp_iterations else 1.0
            anchors = outputs["contrastive_embed"][(groups - 1) * b:]  # the groups of the last frame layer
            losses["contrastive"] = k.weight * ramp * self._contrastive(anchors, clip_matches[(groups - 1) * b:],
                                                                        clip_labels, batch)
        if self.track_head is not None:
            losses["track"] = self.track_loss(outputs, [self.pad(t) for t in batch.instances], batch)
            if self.track_head.count is not None:
                losses["track_count"] = self.track_count_loss(batch)
        return losses

    def _similarity(self, outputs, frame_matches, frame_ids, clip_matches, b, t_len) -> torch.Tensor:
        """VITA's similarity over each group (a clip read from one frame-decoder layer): matched frame embeddings
        (per frame) and clip embeddings (last motion layer) of the same object are pulled together."""
        embeds, ids, groups = [], [], []
        for layer, matches in enumerate(frame_matches):
            for n, (q, k) in enumerate(matches):  # frame n of clip n // t_len
                g = layer * b + n // t_len
                embeds.append(outputs["frame_embed"][g, n % t_len, q])
                ids.append(frame_ids[n][k].to(q.device))
                groups.append(torch.full((len(q),), g))
        for g, (q, k) in enumerate(clip_matches):
            embeds.append(outputs["clip_embed"][-1, g, q])
            ids.append(k.to(q.device))
            groups.append(torch.full((len(q),), g))
        device = embeds[0].device
        return similarity_loss(torch.cat(embeds), torch.cat(ids).to(device), torch.cat(groups).to(device),
                               len(clip_matches))

    def _contrastive(self, anchors: torch.Tensor, matches, labels, batch: ClipBatch) -> torch.Tensor:
        """Per clip: the mean contrastive embedding of the queries matched to its referred objects is its
        expression's anchor; every anchor updates the bank (gathered over processes), then is contrasted with it.
        A clip whose referred objects are absent from all its frames has no anchor and adds 0."""
        if self.index is None:
            raise RuntimeError("DsHmp's contrastive loss needs the training split's expressions: call "
                               "model.prepare_training(split) first (rvos train does), or set model.contrastive.weight=0")
        b, c = anchors.shape[0], anchors.shape[-1]
        ids = torch.full((b,), -1, dtype=torch.int64, device=anchors.device)
        means = anchors.new_zeros(b, c)
        entries = []
        for n, (q, k) in enumerate(matches):
            if labels is not None:
                q = q[labels[n][k.to(labels[n].device)].to(q.device)]
            entry = self.index.of(batch.video_ids[n], batch.expression_ids[n])
            entries.append(entry)
            if len(q):
                ids[n] = entry[0]
                means[n] = anchors[n, q].mean(0)
        self.memory_bank.update(ids, means)
        rng = np.random.default_rng(int(torch.randint(2 ** 31, ())))
        per_clip = [self.memory_bank.contrast(means[n], entry[1], entry[2], rng) if ids[n] >= 0 else means.sum() * 0
                    for n, entry in enumerate(entries)]
        return torch.stack(per_clip).mean()

    # ------------------------------------------------------------------------------------------- selection

    def select(self, probs: torch.Tensor, mask_logits: torch.Tensor, threshold: float | None = None,
               count: int = 0) -> ClipMasks:
        """probs (T, Q), mask_logits (T, Q, h, w) -> the selection rule's masks and scores; ``count``: how many
        objects the sentence refers to, as ``track.count``'s classifier reads it (0: no such reading)."""
        if self.cfg.selection == "top1":
            return top_query(probs, mask_logits)
        keep_best = self.track_head is not None and self.cfg.track.keep_best
        return union_of_queries(probs, mask_logits, self.cfg.score_threshold if threshold is None else threshold,
                                keep_best, count)

    def postprocess(self, outputs: dict, score_threshold: float | None = None) -> list[ClipMasks]:
        t_len = outputs["clip_length"]
        probs = outputs["clip_logits"][-1].softmax(-1)[..., 0]  # (N, cQ)
        masks = outputs["clip_masks"][-1].transpose(1, 2)  # (N, T, cQ, h, w)
        n = len(masks) // outputs["groups"]  # the clips read from the last frame layer
        probs, masks = probs[-n:], masks[-n:]
        if self.track_head is not None:
            probs = self.candidate_probs(outputs["track_logits"].sigmoid(), outputs["objectness"])
            masks = outputs["slot_logits"].transpose(1, 2)
        counts = outputs.get("object_counts") or [0] * len(probs)
        return [self.select(p.expand(t_len, -1), m, score_threshold, c) for p, m, c in zip(probs, masks, counts)]

    def parameter_group(self, name: str) -> str:
        if name.startswith("text_encoder."):
            return "text"
        if name.startswith("backbone.") and ".fusion." not in name and ".res_gate." not in name:
            return "backbone"
        return "head"

    # ------------------------------------------------------------------------------------------- inference

    def start_session(self, text: TextInputs, score_threshold: float | None = None) -> "DsHmpSession":
        return DsHmpSession(self, text, score_threshold)

    # ------------------------------------------------------------------------------------------- reporting

    def describe(self) -> dict:
        cfg = self.cfg
        return {
            "text_encoder": {"model": cfg.text.model, "frozen_setting": cfg.text.frozen, "width": self.text_encoder.width,
                             "decoupler": cfg.text.decoupler},
            "backbone": {"model": "multi-modal Swin", "embed_dim": cfg.backbone.embed_dim,
                         "depths": list(cfg.backbone.depths), "channels": self.backbone.channels},
            "pixel_decoder": {"layers": cfg.pixel_decoder.layers},
            "frame_decoder": {"layers": cfg.frame_decoder.layers, "queries": cfg.frame_decoder.queries},
            "motion_decoder": {"hmp_layers": cfg.motion.hmp_layers, "layers": cfg.motion.layers,
                               "queries": cfg.motion.queries, "window": cfg.motion.window},
            "memory_bank": {"entries": cfg.contrastive.entries, "contrastive_weight": cfg.contrastive.weight},
            "selection": {"rule": "top-1 query" if cfg.selection == "top1"
                          else union_rule(cfg.score_threshold, cfg.track),
                          "score": "track grounding (the clip queries' masks)" if cfg.track.enabled
                          else "the clip query's class"}
            | ({"candidates": "each clip query's masks cut into the tracks of their connected blobs"}
               if cfg.split_blobs else {})
            | ({"score": "track grounding (the frame queries linked as objects)",
                "candidates": "the frame queries linked over the clip into slots (their frame masks)"}
               if self.links_objects else {}),
        }


class DsHmpSession(InferenceSession):
    """Pass one keeps, per sentence, the last frame-decoder layer's queries of every frame; :meth:`decode` runs the
    motion decoder over the whole video; pass two encodes each window again for its clip mask features (the last
    observed window's are kept, so a video of one window is encoded once).

    With track grounding the referring score reads every frame's masks, which need the motion decoder's mask
    embeddings: pass one then keeps every window's clip mask features and frames as the descriptors read them (per
    frame and sentence mask_dim x H/4 x W/4 values, a CPU-size option's cost), and :meth:`decode` scores the
    tracks; with ``split_blobs`` it cuts each query's masks into blob tracks and keeps where they are, so that pass
    two reads each window's masks as the tracks the head scored.

    With ``track.link`` "objects" pass one links each window's frame queries to the slots of the windows before and
    keeps only what the track head reads of their masks (and the slots' order); :meth:`decode` scores the slots
    without the motion decoder, and pass two reads each window's frame masks again in the slots' order."""

    def __init__(self, model: DsHmpModel, text: TextInputs, score_threshold: float | None):
        self.model, self.threshold = model, score_threshold
        self.text = model.encode_text(text)
        self.count = text["input_ids"].shape[0]
        self.queries: list[list[torch.Tensor]] = [[] for _ in range(self.count)]  # per sentence, per window
        self.cache = LastWindow()  # the clip mask features per sentence
        self.probs: list[torch.Tensor] = []  # per sentence (cQ,)
        self.embeds: list[torch.Tensor] = []  # per sentence (cQ, D)
        tracked = model.track_head is not None
        self.features: list[list[torch.Tensor]] | None = [[] for _ in range(self.count)] if tracked else None
        self.images: list[torch.Tensor] = []  # track grounding: per window the frames as the descriptors read them
        self.track_text = model.track_text(text) if tracked else None
        # track.count: how many objects each sentence refers to (0: the threshold decides)
        self.object_counts = object_counts(model.track_head, self.track_text) if tracked else [0] * self.count
        self.objectness: list[torch.Tensor] = []  # track grounding: per sentence (1, cQ) the class probabilities
        # with model.split_blobs: per sentence the blob tracks (their queries (K,), places (K, T, h, w))
        self.blobs: list[tuple[torch.Tensor, torch.Tensor]] = []
        # with track.link "objects": per sentence its linker, and per window the masks' descriptors (n, fQ, D), peaks
        # (n, fQ) and slot order (n, fQ); then per sentence the slot order of every frame (T, fQ)
        self.linkers = [model.object_linker() for _ in range(self.count)] if model.links_objects else None
        self.slots: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in range(self.count)]
        self.perms: list[torch.Tensor] = []

    def _object_masks(self, frames: torch.Tensor, k: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """Sentence k's frame decoder outputs of the frames, and the masks and peaks of
        :meth:`DsHmpModel.object_frame_masks`."""
        fo, _ = self.model.encode_frames(frames, self.text.take(k, frames.shape[0]))
        return fo, *self.model.object_frame_masks(fo)

    def observe(self, frames: torch.Tensor, start: int) -> None:
        if self.linkers is not None:
            images, cached = self.model.descriptor_frames(frames), []
            for k, linker in enumerate(self.linkers):
                fo, masks, peaks = self._object_masks(frames, k)
                descriptors = self.model.mask_descriptors(images, masks)
                perms = self.model.link_frame_queries(fo, masks, peaks, descriptors, 1, linker)[0]
                self.slots[k].append((descriptors, peaks, perms))
                cached.append(masks)
            self.cache.keep(start, cached)
            return
        cached = []
        for k in range(self.count):
            fo, features = self.model.encode_frames(frames, self.text.take(k, frames.shape[0]))
            self.queries[k].append(fo["frame_queries"][-1])
            cached.append(features)
            if self.features is not None:
                self.features[k].append(features)
        if self.features is not None:
            self.images.append(self.model.descriptor_frames(frames))
        self.cache.keep(start, cached)

    def decode(self) -> None:
        if self.linkers is not None:  # the slots scored over the video
            for k, windows in enumerate(self.slots):
                descriptors, peaks, perms = (torch.cat(x)[None] for x in zip(*windows))
                _, logits = self.model.descriptor_logits(reorder(descriptors, perms), self.track_text[k:k + 1])
                objectness = slot_objectness(peaks, perms, descriptors[..., 0])
                self.probs.append(self.model.candidate_probs(logits.sigmoid(), objectness)[0])
                self.perms.append(perms[0])
            self.slots = []
            return
        for k in range(self.count):
            mo = self.model.decode_clip(torch.cat(self.queries[k])[None], self.text.take(k))
            self.probs.append(mo["logits"][-1, 0].softmax(-1)[:, 0])
            self.embeds.append(mo["mask_embed"][-1, 0])
            if self.features is not None:  # every frame's masks -> the queries' tracks over the video
                self.objectness.append(self.probs[k][None])
                masks = torch.einsum("qc,nchw->qnhw", self.embeds[k], torch.cat(self.features[k]))[None]
                masks = self.model.object_masks(masks, self.objectness[k])
                objectness = self.objectness[k]
                if self.model.cfg.split_blobs:  # the blob tracks are the candidates, with their query's objectness
                    masks, objectness, _, (blobs,) = self.model.blob_candidates(masks, objectness)
                    self.blobs.append(blobs)
                _, logits = self.model.track_logits(torch.cat(self.images), masks, self.track_text[k:k + 1])
                self.probs[k] = self.model.candidate_probs(logits.sigmoid(), objectness)[0]
        self.queries, self.features, self.images = [], None, []

    def candidates(self, frames: torch.Tensor, start: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = frames.shape[0]
        if self.linkers is not None:  # the slots' frame masks
            masks = self.cache.get(start, lambda: [self._object_masks(frames, k)[1] for k in range(self.count)])
            return [(self.probs[k].expand(n, -1), reorder(m[None], self.perms[k][None, start:start + n])[0])
                    for k, m in enumerate(masks)]
        features = self.cache.get(
            start, lambda: [self.model.encode_frames(frames, self.text.take(k, n))[1] for k in range(self.count)])
        logits = [torch.einsum("qc,nchw->nqhw", self.embeds[k], f) for k, f in enumerate(features)]
        if self.objectness:  # the object queries' masks (or their blob tracks'), as the track head read them
            logits = [self.model.object_masks(x.transpose(0, 1)[None], self.objectness[k])[0]  # (cQ, n, h, w)
                      for k, x in enumerate(logits)]
            if self.blobs:
                logits = [blob_masks(x, owners, where[:, start:start + n])
                          for x, (owners, where) in zip(logits, self.blobs)]
            logits = [x.transpose(0, 1) for x in logits]
        return [(self.probs[k].expand(n, -1), x) for k, x in enumerate(logits)]

    def predict(self, frames: torch.Tensor, start: int) -> list[ClipMasks]:
        return [self.model.select(probs, logits, self.threshold, count)
                for (probs, logits), count in zip(self.candidates(frames, start), self.object_counts)]

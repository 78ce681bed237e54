"""MUTR (ICCV 2023) as the PVUW 2024 MeViS 2nd-place report builds on it: referring video segmentation with
multi-scale temporal aggregation (MTA) and multi-object temporal interaction (MTI).

    sentence ─RoBERTa─> words ─FeatureResizer─> (B, L, C), 1-D sine positions
    frames ─video Swin─> strides 4, 8, 16, 32; strides 8, 16, 32 (+ a stride-2 conv of stride 32: 64)
        ─1x1 conv + GroupNorm─> levels; each level += what it reads from the words (additive fusion)
    MTA: the words read the projected (unfused) levels of all frames of the clip, one shared layer applied level
        after level; the first token's result is the sentence feature
    4 levels ─deformable encoder─> memory; ─deformable decoder (box refinement)─> per frame Q frame queries (their
        content the sentence feature): boxes, per layer
    MTI: a layer's frame queries of the whole clip ─windowed encoder, decoder─> Q video queries: scores, and the
        kernels of the dynamic mask head
    memory (32, 16, 8) + the stride-4 backbone map ─cross-modal FPN (each level reads the words)─> mask features
    dynamic head (3 convs, 8 channels, relative coordinates at stride 4) ─> per frame a mask logit per query

Training supervises every decoder layer (its frame queries through MTI, its boxes, its masks) with the
ReferFormer matcher and criterion (:mod:`rvos.models.criterion.referformer`), masks at stride 4. Inference runs
MTI on the last decoder layer's frame queries alone and, as the official code then does, reads them with the
first layer's heads: the first class head, the first layer's boxes and their centres for the mask head's
coordinates (``model.infer_heads: last``, a CPU-size option, reads them with the last layer's, as training pairs
them; ``model.clip_queries``, another, lets the decoder's self-attention read the queries of every frame of the
clip, so that frame query q sees what it boxes in the other frames). The query with the best score is the output
(top-1), threshold 0.5.

With ``model.loss.instance_targets`` and ``model.track.enabled`` (CPU-size options, off in the paper configs) every
annotated object of a clip is a target of its own video query, and a query's referring probability is track
grounding's (:mod:`rvos.models.modules.track_grounding`), read from its masks over the window; ``selection: union``
takes the queries whose probability passes ``score_threshold`` (the official rule is ``top1``).

``model.proposals`` (a CPU-size option; :mod:`rvos.models.modules.proposals`, as SgMg's) starts each frame's queries
at the peaks of a class-agnostic centre heatmap on the mask features, as two-stage Deformable DETR takes its first
queries from the encoder. The mask head draws video query q's mask in each frame around the box of that frame's query
q; with the learned positions that frame query is on another object in a fifth of the object-frames, while some query
of the frame lies within 3 pixels (``benchmarks/results/synth_learning.md``). A frame's proposals come in their peaks'
order, so each clip's frame queries are linked over its frames (in training too) before MTI reads them, so that query
q of every frame follows one object: by their boxes (``model.link: boxes``, :func:`link_boxes`), or as ``vlm``'s slots
are (``objects``, :class:`~rvos.models.modules.query_init.ObjectLinker`: the queries whose peak passes
``link_objectness``, a second box on a likelier peak's object left out, matched to the slots by the place where each
slot's object is expected, the mean colour in their boxes and their boxes' overlap). Between a training clip's frames,
spread over the video, an object moves out of its box, and the boxes alone lose it.

Where rvos departs from the official code, on purpose: with several clips in a batch, the official model mixes
them up in two places (``mti_hs.repeat(1, t, 1, 1)`` gives clip ``b``'s frame ``t`` the video queries of clip
``(b * T + t) mod B``, and MTI reshapes (layers, T, B, ...) as (layers * B, T, ...)), which is correct only for one
clip per GPU; rvos keeps each clip's queries its own, and agrees with the official model on single clips. The
frozen RoBERTa stays in inference mode in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from rvos.errors import ConfigError
from rvos.models.criterion.referformer import (ReferLossConfig, layer_losses, match, num_valid_frames, pad_to,
                                               referring_targets)
from rvos.models.layers.attention import AttentionLayer, FFNLayer
from rvos.models.layers.dynamic_conv import DynamicMaskHead
from rvos.models.layers.position_encoding import sine_2d_masked, sine_text
from rvos.models.meta.base import (ClipBatch, ClipMasks, InferenceSession, LastWindow, TextInputs, top_query,
                                   union_of_queries, union_rule)
from rvos.models.modules.cross_modal_fpn import CrossModalFPN
from rvos.models.modules.cues import FeatureResizer
from rvos.models.modules.instance_queries import InstanceQueryInit
from rvos.models.modules.proposals import LINK_UNIT, ProposalHead
from rvos.models.modules.query_init import (BOX_GRID, OBJECT_LINKING, ObjectLinker, box_masks, link_boxes,
                                            mean_colours, reorder)
from rvos.models.modules.referformer import (BackboneConfig, EncodedText, ReferFormerParts, TextConfig,
                                             TransformerConfig, WordFusion)
from rvos.models.modules.temporal_interaction import TemporalInteraction
from rvos.models.modules.track_grounding import (QueryTracks, TrackGroundingConfig, check_query_tracks,
                                                 object_counts, suppress_duplicates)

# model.link "objects": a second box over this IoU with a likelier peak's box is no object (as vlm_tiny_synth's
# track.duplicate_iou does with masks)
DUPLICATE_BOX_IOU = 0.7


@dataclass
class MTIConfig:
    enc_layers: int = 3
    dec_layers: int = 3
    window: int = 4  # frames per window of the encoder
    heads: int = 8
    ffn: int = 2048
    dropout: float = 0.2


@dataclass
class InstanceConfig:
    """The report's instance-mask query initialisation (:mod:`rvos.models.modules.instance_queries`). In training
    the instances are the clip's annotated objects; at inference a video instance segmentation model's results."""

    enabled: bool = False
    max_instances: int = 20  # the best by score (at inference) or the first annotated (in training)
    heads: int = 8
    ffn: int = 2048
    dropout: float = 0.0


@dataclass
class MutrConfig:
    name: str = "mutr"
    hidden_dim: int = 256
    queries: int = 5  # frame queries per frame, and video queries
    levels: int = 4  # 3 backbone levels (strides 8, 16, 32) and (4) a stride-2 conv of the last (stride 64)
    fusion_heads: int = 8  # the words cross-attention of every level, and MTA's
    mta_ffn: int = 2048
    fpn_heads: int = 8  # the cross-modal FPN's attention
    mask_dim: int = 256  # the cross-modal FPN's mask features (the dynamic head's input)
    mask_channels: int = 8  # the dynamic head's hidden channels (its output is one mask logit)
    controller_layers: int = 3  # dynamic convolutions
    rel_coord: bool = True
    size_divisibility: int = 1  # the official inference does not pad
    # which decoder layer's heads read the video queries of the last layer at inference: "first" (the official
    # pairing: the first layer's class head, and the first layer's boxes as the mask head's reference points) or
    # "last" (the last layer's, as training pairs each layer's video queries with its own layer's heads and boxes)
    infer_heads: str = "first"
    # the deformable decoder's self-attention among the queries of every frame of a clip (a CPU-size option; the
    # official decoder reads a frame's queries alone): frame query q of one frame sees what q boxes in the others
    clip_queries: bool = False
    # each frame's queries start at the peaks of a class-agnostic centre heatmap on the cross-modal FPN's stride-4 mask
    # features, as two-stage Deformable DETR takes its first queries from the encoder: content the sentence plus the
    # features at the peak, position the peak's embedding, first reference point the peak (learnt with
    # loss.centre_weight); a frame's queries then come in their peaks' order, so they are linked over the clip
    # (``link``) before MTI, and video query q's mask is drawn around one object's box in every frame (a CPU-size
    # option, module text)
    proposals: bool = False
    # with proposals, how a clip's frame queries are linked over its frames: "boxes" (:func:`link_boxes`: the overlap of
    # a query's box with each slot's last box, and the queries' cosine) or "objects" (vlm_tiny_synth's linking,
    # :func:`link_objects`, weighted as its track.link_* are: the queries whose peak passes link_objectness and whose
    # box is no second box on a likelier peak's object are objects, tracked with a memory of each slot's object, its
    # place and velocity, the mean colour in its box and its box, while it is away)
    link: str = "boxes"
    link_objectness: float = 0.2
    text: TextConfig = field(default_factory=TextConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    mti: MTIConfig = field(default_factory=MTIConfig)
    instances: InstanceConfig = field(default_factory=InstanceConfig)
    loss: ReferLossConfig = field(default_factory=lambda: ReferLossConfig(low_mask_weight=0.0, low_dice_weight=0.0))
    # "top1": the query with the best score (the official rule); "union": the queries whose probability passes
    # score_threshold (for expressions that name several objects; with track.keep_best the best one in any case)
    selection: str = "top1"
    score_threshold: float = 0.5
    # track grounding of the video queries' masks (a CPU-size option; off in the paper configs; module text)
    track: TrackGroundingConfig = field(default_factory=TrackGroundingConfig)

    def __post_init__(self):
        if self.selection not in ("union", "top1"):
            raise ValueError(f"model.selection: expected union or top1, got {self.selection!r}")
        if self.infer_heads not in ("first", "last"):
            raise ValueError(f"model.infer_heads: expected first or last, got {self.infer_heads!r}")
        check_query_tracks(self.track, "MUTR", refused=("min_objectness", "exclusive"))
        if self.link not in ("boxes", "objects"):
            raise ValueError(f"model.link: expected boxes or objects, got {self.link!r}")
        if not 0.0 <= self.link_objectness < 1.0:
            raise ValueError(f"model.link_objectness: a heatmap probability in [0, 1), got {self.link_objectness}")
        if self.levels not in (3, 4):
            raise ValueError(f"model.levels: 3 (strides 8, 16, 32) or 4 (and 64), got {self.levels}")


class TextAggregation(nn.Module):
    """MTA's shared layer: the words (with their positions) attend to a level's visual tokens, then an FFN;
    post-norm, no dropout."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.attn = AttentionLayer(dim, heads)
        self.ffn = FFNLayer(dim, ffn)

    def forward(self, words, pos, visual, padding):
        """words, pos (B, L, C); visual (B, S, C) the level's tokens of a clip's frames; padding (B, S)."""
        return self.ffn(self.attn(words, visual, query_pos=pos, key_padding_mask=padding))


class MutrModel(QueryTracks, ReferFormerParts):
    config_class = MutrConfig
    method = "MUTR"
    mask_stride = 4
    window_invariant = False  # MTI, the FPN's attention and a video Swin read the frames of a window together

    def __init__(self, cfg: MutrConfig):
        super().__init__(cfg)
        c = cfg.hidden_dim
        self.build_parts(cfg)
        self.resizer = FeatureResizer(self.text_encoder.width, c, 0.1)
        self.fusion_module = WordFusion(c, cfg.fusion_heads, "add")
        self.mta = TextAggregation(c, cfg.fusion_heads, cfg.mta_ffn)
        x, m = cfg.transformer, cfg.mti
        self.pixel_decoder = CrossModalFPN([self.backbone.channels[0], c, c, c], c, cfg.mask_dim, cfg.fpn_heads, x.ffn)
        self.mask_head = DynamicMaskHead(c, cfg.mask_dim, cfg.mask_channels, cfg.controller_layers, stride=4,
                                         rel_coord=cfg.rel_coord, out_channels=1)
        self.mti = TemporalInteraction(c, cfg.queries, cfg.queries, m.heads, m.ffn, m.enc_layers, m.dec_layers,
                                       m.window, m.dropout)
        self.proposals = ProposalHead(cfg.mask_dim, c, cfg.queries, relative=False) if cfg.proposals else None
        i = cfg.instances
        if i.enabled:
            self.instance_init = InstanceQueryInit(self.backbone.channels, c, i.heads, i.ffn, i.dropout)
        self.build_track_grounding(cfg.track)

    # ------------------------------------------------------------------------------------------- text

    def encode_text(self, text: TextInputs) -> EncodedText:
        t = self.text_encoder.forward_text(text)
        return EncodedText(self.resizer(t.words), t.padding, sine_text(t.padding, self.cfg.hidden_dim),
                           self.resizer(t.sentence))

    # ------------------------------------------------------------------------------------------- stages

    def encode_images(self, frames: torch.Tensor) -> dict:
        """frames (B, T, 3, H, W) in [0, 1] -> what does not depend on the sentence: the backbone's maps, their
        paddings and positions, the frames padded to ``size_divisibility`` (N, 3, H', W') and their padding, and the
        clips' shape."""
        b, t_len, _, h, w = frames.shape
        images, padding = self.pad_frames(frames.flatten(0, 1))
        features = self.backbone.forward_image(images, t_len)
        pads = [self.level_padding(padding, f.shape[-2:]) for f in features]
        poss = [sine_2d_masked(p, self.cfg.hidden_dim // 2).to(f.dtype) for p, f in zip(pads, features)]
        return {"features": features, "pads": pads, "poss": poss, "padding": padding, "shape": (b, t_len, h, w),
                "images": images}

    def initial_queries(self, instances: list[torch.Tensor] | None, shape) -> torch.Tensor | None:
        """Per clip the instance masks (K_b, T, H, W) (best first; at the frames' size) -> MTI's initial video
        queries (B, Q, C), or None (the learned ones) without the instance block or without instances."""
        if not self.cfg.instances.enabled or instances is None:
            return None
        b, t_len, h, w = shape
        start, pos = self.mti.query_feat.weight, self.mti.query_embed.weight
        out = []
        for masks in instances:
            masks = masks[: self.cfg.instances.max_instances]
            if masks.shape[0] == 0:
                out.append(start)
                continue
            if tuple(masks.shape[1:]) != (t_len, h, w):
                raise ValueError(f"instance masks of shape {tuple(masks.shape[1:])} for clips of {t_len} frames of "
                                 f"{h}x{w}")
            images = masks.float().flatten(0, 1)[:, None].expand(-1, 3, -1, -1)  # each mask as an image
            maps = self.encode_images(images.reshape(masks.shape[0], t_len, 3, h, w))["features"]
            out.append(self.instance_init(start, pos, self.instance_init.tokens(maps, masks.shape[0])))
        return torch.stack(out)

    def encode_clips(self, frames: torch.Tensor | dict, text: EncodedText, layers: list[int],
                     instances: list[torch.Tensor] | None = None, init: torch.Tensor | None = None) -> dict:
        """frames (B, T, 3, H, W) in [0, 1], or their :meth:`encode_images`; text per clip; per clip its instance
        masks (K_b, T, H, W) when the instance block is on -> for each decoder layer in ``layers`` (through MTI)
        the scores (l, B, Q), the boxes (l, B, T, Q, 4) and the mask logits (l, B, T, Q, H'/4, W'/4) at stride 4
        of the padded input, read with the heads and boxes of the first ``len(layers)`` decoder layers (the official
        pairing: at inference MTI reads the last layer, the first layer's heads read it), or with ``model.infer_heads``
        "last" those of ``layers`` themselves. ``init``: the instances' initial queries already
        made (:meth:`initial_queries`; they read no sentence), in place of ``instances``."""
        cfg = self.cfg
        images = frames if isinstance(frames, dict) else self.encode_images(frames)
        features, pads, poss, padding = images["features"], images["pads"], images["poss"], images["padding"]
        b, t_len, h, w = images["shape"]
        per_frame = text.repeat(t_len)
        srcs, masks, level_pos = [], [], []
        words = text.words
        for level in range(cfg.levels):
            proj = self.input_proj[level](features[min(level + 1, 3)])
            mask = pads[level + 1] if level < 3 else self.level_padding(padding, proj.shape[-2:])
            srcs.append(self.fusion_module(proj, per_frame.words, per_frame.padding, per_frame.pos))
            masks.append(mask)
            level_pos.append(poss[level + 1] if level < 3 else sine_2d_masked(mask, cfg.hidden_dim // 2).to(proj.dtype))
            # MTA: the words read this level's (unfused) tokens of every frame of their clip
            tokens = proj.flatten(2).transpose(1, 2).reshape(b, -1, proj.shape[1])
            words = self.mta(words, text.pos, tokens, mask.reshape(b, -1))
        sentence = words[:, 0]
        memory, shapes, ratios, flat_padding = self.transformer.encode(srcs, masks, level_pos)
        levels = memory.split([a * b_ for a, b_ in shapes], dim=1)[:3]
        maps = [m.transpose(1, 2).reshape(m.shape[0], -1, *s) for m, s in zip(levels, shapes)]
        mask_features = self.pixel_decoder([features[0], *maps], poss, pads, t_len, text.words, text.pos,
                                           text.padding)
        tgt = sentence.repeat_interleave(t_len, 0)[:, None].expand(-1, cfg.queries, -1)
        tgt, query_pos, reference, objectness, peaks = self.start_queries(tgt, mask_features, ratios)
        hs, boxes = self.transformer.decode(tgt, query_pos, memory, shapes, ratios, flat_padding, self.bbox_embed,
                                            t_len if cfg.clip_queries else 1, reference=reference)
        if self.proposals is not None:  # query q of every frame on one object: linked by the last layer's boxes
            seen = images["images"][..., :h, :w]  # the frames the boxes are relative to
            perms = self.link_queries(boxes[-1].view(b, t_len, *boxes.shape[2:]), hs[-1].view(b, t_len, *hs.shape[2:]),
                                      peaks.view(b, t_len, -1), seen.reshape(b, t_len, *seen.shape[1:]))
            hs, boxes = (torch.stack([reorder(x.view(b, t_len, *x.shape[1:]), perms).flatten(0, 1) for x in y])
                         for y in (hs, boxes))
        if init is None:
            init = self.initial_queries(instances, (b, t_len, h, w))
        video = [self.mti(hs[layer].view(b, t_len, *hs.shape[2:]), init) for layer in layers]  # (B, Q, C) each
        heads = layers if cfg.infer_heads == "last" else list(range(len(layers)))
        logits = torch.stack([self.class_embed[i](v)[..., 0] for i, v in zip(heads, video)])
        boxes = boxes[heads]  # (l, B*T, Q, 4): video query q's box in a frame is frame query q's there
        scale = torch.tensor([w, h], dtype=boxes.dtype, device=boxes.device)
        mask_logits = torch.stack([
            self.mask_head(mask_features, v.repeat_interleave(t_len, 0), x[..., :2].detach() * scale)[:, :, 0]
            for x, v in zip(boxes, video)])  # (l, B*T, Q, h, w)
        n = len(layers)
        out = {"logits": logits, "boxes": boxes.view(n, b, t_len, *boxes.shape[2:]),
               "masks": mask_logits.view(n, b, t_len, *mask_logits.shape[2:])}
        return out | ({"objectness": objectness} if objectness is not None else {})  # (B * T, 1, h, w), frame order

    @torch.no_grad()
    def link_queries(self, boxes: torch.Tensor, queries: torch.Tensor, peaks: torch.Tensor,
                     images: torch.Tensor) -> torch.Tensor:
        """The proposals' frame queries of each clip: boxes (B, T, Q, 4) in [0, 1] of the frames, queries (B, T, Q, C),
        their peaks' objectness (B, T, Q), the frames (B, T, 3, H, W) without padding -> permutations (B, T, Q)
        that put query q of every frame on one object (``model.link``; "objects" reads the frames' colours in each
        box)."""
        if self.cfg.link == "boxes":
            return link_boxes(boxes, queries)[0]
        h, w = images.shape[-2:]
        masks = box_masks(boxes, (h, w)).float()  # (B, T, Q, H, W)
        colours = mean_colours(masks, images)
        kept = suppress_duplicates(peaks.flatten(0, 1), masks.flatten(0, 1), self.cfg.link_objectness,
                                   DUPLICATE_BOX_IOU).view_as(peaks)
        positions = boxes[..., :2] * torch.tensor([w, h], dtype=boxes.dtype, device=boxes.device) / (4 * LINK_UNIT)
        grid = box_masks(boxes, (BOX_GRID, BOX_GRID))
        return ObjectLinker(**OBJECT_LINKING).link(queries, positions, kept >= self.cfg.link_objectness, colours, grid)

    # ------------------------------------------------------------------------------------------- training

    def forward(self, batch: ClipBatch) -> dict:
        """Per layer the scores (l, B, Q), boxes (l, B, T, Q, 4) and mask logits (l, B, T, Q, h, w) at stride 4:
        every decoder layer in training, the official inference pairing (one) otherwise; with track grounding the
        queries' referring logits (B, Q) read from the last of them, and what the track loss reads."""
        text = self.encode_text(batch.text)
        layers = list(range(self.cfg.transformer.dec_layers)) if self.training else [-1]
        # the clip's annotated objects stand for a VIS model's instances (in the order the batch gives them)
        out = self.encode_clips(batch.frames, text, layers, batch.instances or None)
        size = tuple(4 * s for s in out["masks"].shape[-2:])
        if self.track_head is not None:
            b, t_len = batch.frames.shape[:2]
            images = self.descriptor_frames(self.pad_frames(batch.frames.flatten(0, 1))[0])
            slot_logits = out["masks"][-1].transpose(1, 2)  # (B, Q, T, h, w)
            text = self.track_text(batch.text)
            slot_tracks, logits = self.track_logits(images, slot_logits, text)
            out |= {"track_logits": logits, "slot_tracks": slot_tracks, "slot_masks": slot_logits > 0,
                    "mask_images": images.view(b, t_len, *images.shape[1:]),
                    "object_counts": object_counts(self.track_head, text)}
        if self.training:
            out["targets"] = referring_targets(batch, size, self.cfg.loss.instance_targets)
            out["size"] = size
        return out

    def loss(self, outputs: dict, batch: ClipBatch) -> dict:
        """Every decoder layer's losses (the last layer's unsuffixed, the others ``_0``, ``_1``, ...), and track
        grounding's."""
        targets = outputs["targets"]
        norm = num_valid_frames(targets.valid)
        t_len = outputs["boxes"].shape[2]
        parts = []
        for layer in range(outputs["logits"].shape[0]):
            logits = outputs["logits"][layer][:, None].expand(-1, t_len, -1)  # a video query scores every frame
            boxes, masks = outputs["boxes"][layer], outputs["masks"][layer]
            matched = match(logits, boxes, masks, targets, targets.at_stride(4), self.cfg.loss)
            parts.append(layer_losses(logits, boxes, matched, masks[targets.clips, :, matched], None, targets,
                                      self.cfg.loss, norm, mask_stride=4))
        losses = self.layer_losses(parts)
        if "objectness" in outputs:  # the proposals' heatmap against the centres of the clip's targets
            losses["centre"] = self.centre_loss(outputs["objectness"], targets, t_len)
        if self.track_head is not None:
            losses["track"] = self.track_loss(outputs, [pad_to(x, outputs["size"]) for x in batch.instances], batch)
            if self.track_head.count is not None:
                losses["track_count"] = self.track_count_loss(batch)
        return losses

    # ------------------------------------------------------------------------------------------- selection

    def postprocess(self, outputs: dict, score_threshold: float | None = None) -> list[ClipMasks]:
        self.check_threshold(score_threshold)
        t_len = outputs["masks"].shape[2]
        probs = outputs["track_logits"] if self.track_head is not None else outputs["logits"][-1]  # (B, Q)
        counts = outputs.get("object_counts") or [0] * len(probs)
        return [self.select(p.sigmoid().expand(t_len, -1), m, score_threshold, c)
                for p, m, c in zip(probs, outputs["masks"][-1], counts)]

    def select(self, probs: torch.Tensor, masks: torch.Tensor, threshold: float | None = None,
               count: int = 0) -> ClipMasks:
        """probs (T, Q), mask logits (T, Q, h, w) -> the rule's masks and scores: the official one query, or the
        union of those that pass the threshold (``count``: how many objects the sentence refers to, as
        ``track.count``'s classifier reads it; 0: no such reading)."""
        if self.cfg.selection == "top1":
            return top_query(probs, masks)
        keep_best = self.track_head is not None and self.cfg.track.keep_best
        return union_of_queries(probs, masks, self.cfg.score_threshold if threshold is None else threshold, keep_best,
                                count)

    # ------------------------------------------------------------------------------------------- inference

    def start_session(self, text: TextInputs, score_threshold: float | None = None,
                      instances=None) -> "MutrSession":
        """``instances``: with the instance block, ``(start, stop) -> masks (K, stop - start, H, W)`` of the
        video's instances (best first) at the frames' size, for each window; without, the learned queries."""
        self.check_threshold(score_threshold)
        if instances is not None and not self.cfg.instances.enabled:
            raise ConfigError("instance masks were given, but this MUTR model has no instance block "
                              "(model.instances.enabled is false)")
        return MutrSession(self, text, instances, score_threshold)

    # ------------------------------------------------------------------------------------------- reporting

    def describe(self) -> dict:
        cfg = self.cfg
        b, x, m = cfg.backbone, cfg.transformer, cfg.mti
        return {
            "text_encoder": {"model": cfg.text.model, "frozen_setting": cfg.text.frozen, "width": self.text_encoder.width},
            "backbone": {"model": f"video Swin-{b.variant.upper()}" if b.kind == "video_swin" else b.timm_model,
                         "channels": list(self.backbone.channels)},
            "transformer": {"encoder_layers": x.enc_layers, "decoder_layers": x.dec_layers, "heads": x.heads,
                            "points": x.dec_points, "queries_per_frame": cfg.queries,
                            "self_attention": "the queries of every frame of the clip" if cfg.clip_queries
                            else "a frame's queries"},
            "queries": f"at the peaks of a centre heatmap (stride 4), linked over the clip by their {cfg.link}"
            if cfg.proposals else "learned positions",
            "mti": {"encoder_layers": m.enc_layers, "decoder_layers": m.dec_layers, "window": m.window,
                    "video_queries": cfg.queries},
            "mask_head": {"channels": cfg.mask_channels, "convolutions": cfg.controller_layers,
                          "reference_points": f"the {cfg.infer_heads} decoder layer's box centres (at inference)"},
            "selection": {"rule": "top-1 query (best score over the video)" if cfg.selection == "top1"
                          else union_rule(cfg.score_threshold, cfg.track),
                          "score": "track grounding (the video queries' masks)" if cfg.track.enabled
                          else "the video query's class"},
        }


class MutrSession(InferenceSession):
    """MUTR reads a clip as a whole (MTI, the FPN's attention across frames, a video Swin): each window is one
    clip, its video queries scored and its masks made from them; the best query is chosen per window. Set
    ``infer.window`` to the videos' length to read them whole, as the official inference does."""

    def __init__(self, model: MutrModel, text: TextInputs, instances=None, score_threshold: float | None = None):
        self.model, self.threshold = model, score_threshold
        self.text = model.encode_text(text)
        self.count = text["input_ids"].shape[0]
        self.instances = instances
        self.cache = LastWindow()
        self.track_text = model.track_text(text) if model.track_head is not None else None
        # track.count: how many objects each sentence refers to (0: the threshold decides)
        self.object_counts = (object_counts(model.track_head, self.track_text) if self.track_text is not None
                              else [0] * self.count)

    def _encode(self, frames: torch.Tensor, start: int) -> list[dict]:
        images = self.model.encode_images(frames[None])  # the backbone reads no sentence: once for all of them
        masks = None if self.instances is None else [self.instances(start, start + frames.shape[0])]
        init = self.model.initial_queries(masks, images["shape"])  # nor do the instances
        out = [self.model.encode_clips(images, self.text.take(k, 1), [-1], init=init) for k in range(self.count)]
        if self.track_text is not None:  # each query's referring probability read from its masks over the window
            seen = self.model.descriptor_frames(self.model.pad_frames(frames)[0])
            for k, enc in enumerate(out):
                _, logits = self.model.track_logits(seen, enc["masks"][-1].transpose(1, 2), self.track_text[k:k + 1])
                enc["probs"] = logits[0].sigmoid()
        return out

    def observe(self, frames: torch.Tensor, start: int) -> None:
        self.cache.keep(start, self._encode(frames, start))

    def decode(self) -> None:
        """Nothing spans windows: each is read as a clip of its own."""

    def _window(self, frames: torch.Tensor, start: int) -> list[dict]:
        return self.cache.get(start, lambda: self._encode(frames, start))

    def candidates(self, frames: torch.Tensor, start: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = frames.shape[0]
        probs = lambda out: out["probs"] if "probs" in out else out["logits"][-1, 0].sigmoid()  # noqa: E731
        return [(probs(out).expand(n, -1), out["masks"][-1, 0]) for out in self._window(frames, start)]

    def predict(self, frames: torch.Tensor, start: int) -> list[ClipMasks]:
        return [self.model.select(probs, masks, self.threshold, count)
                for (probs, masks), count in zip(self.candidates(frames, start), self.object_counts)]

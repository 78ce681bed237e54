"""SgMg (ICCV 2023): spectrum-guided multi-granularity referring video object segmentation.

    sentence ─RoBERTa─> words, sentence feature ─FeatureResizer─> (B, L, C), (B, C); words get 1-D sine positions
    frames ─video Swin─> strides 4, 8, 16, 32
    strides 8, 16, 32 (+ a stride-2 conv of stride 32: stride 64) ─1x1 conv + GroupNorm─> C channels, each level:
        spectrum modulation ─> words cross-attention (multiplicative) ─> spectrum modulation
    4 levels ─deformable encoder─> memory; ─deformable decoder (box refinement)─> per frame Q queries, whose
        content is the sentence feature: per layer a score, a box and a dynamic mask head
    memory at strides 8, 16, 32 ─bicubic to stride 8, summed─> mask features
    dynamic head (controller MLP -> two 1x1 convs, relative coordinates) ─> 16 channels at stride 8 per query:
        pixel-shuffled, the stride-2 mask prior; segment-and-optimize with the stride-8 and stride-4 backbone
        features ─> the full-resolution mask

Queries are per frame; the frames of a clip interact only inside the video Swin. Training matches one query per
clip and layer (:mod:`rvos.models.criterion.referformer`) before the expensive refinement, so only the matched
query is refined, at every layer. Inference takes the query with the best mean score over the video, its mask in
every frame (threshold 0.5).

Frames are padded at the bottom and right to ``size_divisibility`` inside the model, with the padding masks the
official model reads (positions, valid ratios of the deformable attention); the masks leave the model at full
resolution of the padded input (``mask_stride`` 1). A training batch whose clips have different sizes is padded by
the data loader, and that padding is read as image (the official training pads to a multiple of 1, i.e. not at
all, for its single-size batches).

With ``model.loss.instance_targets`` and ``model.track.enabled`` (CPU-size options, off in the paper configs) every
annotated object of a clip is a target of its own query, and the referring probability of a query is track
grounding's (:mod:`rvos.models.modules.track_grounding`): a query has a mask in every frame (its stride-2 prior), so
it is a track, which a small head scores against the sentence's bag of token embeddings. ``selection: union`` takes
the queries whose probability passes ``score_threshold`` (the best kept with ``track.keep_best``), so that an
expression naming several objects gets them all; the official rule is ``top1``.

Two more CPU-size options (off in the paper configs) for the synthetic benchmark's small frames, whose objects are
10 to 20 pixels wide: ``model.fine`` adds a third, stride-2 stage to the segment-and-optimize, reading a small stem on
the frames (:mod:`rvos.models.modules.segment_optimize`), for the last decoder layer's masks (those inference shows;
the earlier layers' are the official module's); and ``model.track_refined`` has the track head read every query's
refined masks, area-pooled to the priors' stride-2 grid, instead of the priors, which are 16 channels at stride 8
pixel-shuffled and blur a small object's edges. And ``model.prior_stride: 4`` has the dynamic head read a stride-4 grid
(the memories' sum upsampled, plus a projection of the backbone's stride-4 map) with relative coordinates at that
grid, for 4 channels a query that are folded (:func:`~rvos.models.modules.segment_optimize.unshuffle_half`) into the
official prior's 16 at stride 8: at stride 8 one cell covers most of a small object (on the synthetic benchmark it
did not part two touching objects, whose join starts at their queries' boxes: ``benchmarks/results/synth_learning.md``).
With ``track_refined``, ``model.track.exclusive`` (as ``vlm``'s and DsHmp's) leaves each cell of a frame to the query
whose refined logit is the highest there, in what the track head reads and in the output: beside another object a
query's mask often covers the neighbour too, where the neighbour's own query is surer.

``model.proposals`` (a CPU-size option; :mod:`rvos.models.modules.proposals`, as ``vlm``'s frame decoder has it) starts
each frame's queries at the peaks of a class-agnostic centre heatmap read from a stride-4 map (the memories' sum
upsampled, plus a projection of the backbone's stride-4 map), as two-stage Deformable DETR takes its first queries
from the encoder: a query's content is the sentence plus the map at its peak, its position the peak's embedding, its
first reference point the peak. With the learned positions, a query that starts between two touching objects ends
with a box, and a mask, over both. A frame's queries then come in the order of their peaks' scores, so they are linked
over the clip (``model.link``) in training too, before the clip's matching: by their masks, or as ``vlm``'s slots link
objects (``model.link: objects``: only the queries whose peak is an object, by the place where each slot's object is
expected, the colour under the mask and the mask's overlap, so that a slot keeps its object through the clip).

Where rvos departs from the official code, on purpose: the frozen RoBERTa stays in inference mode in training;
frames are padded before normalisation (black; the official pads normalised frames with zeros); the spectrum
modulation runs in float32 under mixed precision (the official casts its input, then lets its 1x1 convs run in
half precision).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.criterion.referformer import (ReferLossConfig, layer_losses, match, num_valid_frames, pad_to,
                                               referring_targets)
from rvos.models.layers.dynamic_conv import DynamicMaskHead
from rvos.models.layers.position_encoding import sine_2d_masked, sine_text
from rvos.models.layers.spectrum import SpectrumModulation
from rvos.models.meta.base import (NO_MASK, ClipBatch, ClipMasks, InferenceSession, LastWindow, TextInputs,
                                   kept_queries, top_query, union_of_queries, union_rule)
from rvos.models.modules.cues import FeatureResizer
from rvos.models.modules.deform_pixel_decoder import input_projection
from rvos.models.modules.pixel_decoder import FineStem
from rvos.models.modules.proposals import LINK_UNIT, ProposalHead
from rvos.models.modules.referformer import (BackboneConfig, EncodedText, ReferFormerParts, TextConfig,
                                             TransformerConfig, WordFusion)
from rvos.models.modules.query_init import OBJECT_LINKING, ObjectLinker, link_masks, mean_colours, reorder
from rvos.models.modules.segment_optimize import SegmentOptimize, unshuffle_half
from rvos.models.modules.track_grounding import (QueryTracks, TrackGroundingConfig, check_query_tracks,
                                                 duplicate_masks, exclusive_masks, object_counts,
                                                 suppress_duplicates)


@dataclass
class SgMgConfig:
    name: str = "sgmg"
    hidden_dim: int = 256
    queries: int = 5  # per frame
    levels: int = 4  # 3 backbone levels (strides 8, 16, 32) and (4) a stride-2 conv of the last (stride 64)
    fusion_heads: int = 8  # the words cross-attention of every level
    spectrum: bool = True  # false: the ablation without spectrum modulation (the levels go straight to fusion)
    spectrum_sigma: float = 7.0
    mask_channels: int = 16  # the dynamic head's output; pixel-shuffled x4, so a multiple of 16
    controller_layers: int = 2  # dynamic convolutions
    rel_coord: bool = True
    # the channels of a stem on the frames at stride 2 (FineStem) that the segment-and-optimize reads in a third stage
    # before full resolution, for the last decoder layer's masks (0: off, the official two stages at strides 8 and 4;
    # a CPU-size option, module text)
    fine: int = 0
    # the grid the dynamic head reads: 8 (the official: the encoder's memories at stride 8) or 4 (those memories
    # upsampled to stride 4 plus a projection of the backbone's stride-4 map; its 4 channels a query folded into the
    # 16 at stride 8 that the official prior has, so the refinement, the linking and the track head read it as they
    # read that one; a CPU-size option, module text)
    prior_stride: int = 8
    # each frame's queries start at the peaks of a class-agnostic centre heatmap on a stride-4 map (the memories' sum
    # upsampled plus a projection of the backbone's stride-4 map), as two-stage Deformable DETR takes its first
    # queries from the encoder: content the sentence plus the map at the peak, position the peak's embedding, first
    # reference point the peak (learnt with loss.centre_weight; needs link, as a frame's queries come in the order of
    # their peaks' scores; a CPU-size option, module text)
    proposals: bool = False
    size_divisibility: int = 16  # the official inference pads to 16
    text: TextConfig = field(default_factory=TextConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    loss: ReferLossConfig = field(default_factory=ReferLossConfig)
    # "top1": the query with the best mean score over the video (the official rule); "union": the queries whose
    # probability passes score_threshold (for expressions that name several objects; with track.keep_best the best
    # one in any case)
    selection: str = "top1"
    score_threshold: float = 0.5
    # at inference, each frame's queries re-ordered to follow the objects of the frames before, so that a query index
    # is one object over the video: a frame's queries start at the same learned places in every frame, and a query
    # otherwise changes object as the objects move (a CPU-size option; false: the official inference, which reads
    # query q of every frame as one track). "masks" (true in configs written before "objects" existed):
    # :func:`link_masks` on the stride-2 priors; "objects" (with proposals): vlm_tiny_synth's :class:`ObjectLinker`
    # with its weights, on the queries whose peak passes link_objectness (less a second mask over duplicate_iou with a
    # likelier peak's), by query cosine, distance to where the slot's object is expected (the mask's centroid), the
    # colour under the mask and the mask's overlap with the slot's last one
    link: bool | str = False
    link_objectness: float = 0.2
    # with link, a query whose stride-2 mask has an IoU over this with the mask of a larger query of the same frame is
    # emptied in that frame before the linking (:func:`duplicate_masks`; 0: off): a second query on an object otherwise
    # takes a slot of its own, which hops between that object and whatever the query covers in the next frames
    duplicate_iou: float = 0.0
    # track grounding of the queries' stride-2 priors (a CPU-size option; off in the paper configs; module text)
    track: TrackGroundingConfig = field(default_factory=TrackGroundingConfig)
    # the track head reads each query's refined masks, area-pooled to the priors' stride-2 grid, instead of its prior
    # (every query refined in every frame, without gradient; a CPU-size option with track, module text)
    track_refined: bool = False

    def __post_init__(self):
        if self.selection not in ("union", "top1"):
            raise ValueError(f"model.selection: expected union or top1, got {self.selection!r}")
        check_query_tracks(self.track, "SgMg", refused=("min_objectness",))
        if self.levels not in (3, 4):
            raise ValueError(f"model.levels: 3 (strides 8, 16, 32) or 4 (and 64), got {self.levels}")
        if self.mask_channels % 16:
            raise ValueError(f"model.mask_channels must be a multiple of 16 (pixel shuffle x4), got {self.mask_channels}")
        if not 0.0 <= self.duplicate_iou < 1.0:
            raise ValueError(f"model.duplicate_iou: expected an IoU in [0, 1) (0: off), got {self.duplicate_iou}")
        if self.fine < 0:
            raise ValueError(f"model.fine: the stride-2 stem's channels (0: off), got {self.fine}")
        if self.fine and self.size_divisibility % 4:
            raise ValueError(f"model.fine: the stride-2 stem and the stride-4 map meet on frames padded to a multiple "
                             f"of 4; set model.size_divisibility to one (got {self.size_divisibility})")
        if self.prior_stride not in (4, 8):
            raise ValueError(f"model.prior_stride: the dynamic head's grid, 8 (official) or 4, got {self.prior_stride}")
        if self.prior_stride == 4 and (self.size_divisibility % 8 or self.mask_channels != 16):
            raise ValueError(f"model.prior_stride 4 folds a stride-4 map into the 16 channels of the stride-8 prior: "
                             f"it needs frames padded to a multiple of 8 (model.size_divisibility, got "
                             f"{self.size_divisibility}) and model.mask_channels 16 (got {self.mask_channels})")
        if self.link is True:
            self.link = "masks"
        if self.link not in (False, "masks", "objects"):
            raise ValueError(f"model.link: expected false, masks (or true) or objects, got {self.link!r}")
        if self.link == "objects" and not self.proposals:
            raise ValueError("model.link objects links the queries whose heatmap peak is an object: set "
                             "model.proposals")
        if not 0.0 <= self.link_objectness < 1.0:
            raise ValueError(f"model.link_objectness: a heatmap probability in [0, 1), got {self.link_objectness}")
        if self.proposals and not self.link:
            raise ValueError("model.proposals orders each frame's queries by their peaks' scores: set model.link, so "
                             "that a query index follows one object over the frames")
        if self.track_refined and not self.track.enabled:
            raise ValueError("model.track_refined chooses the masks the track head reads: set model.track.enabled")
        if self.track.enabled and self.track.exclusive and not self.track_refined:
            raise ValueError("model.track.exclusive shares each frame's cells among every query's refined masks: set "
                             "model.track_refined, with which the track head reads those")
        if self.duplicate_iou and not self.link:
            raise ValueError("model.duplicate_iou empties duplicate queries for the linking of model.link: set it")


class SgMgModel(QueryTracks, ReferFormerParts):
    config_class = SgMgConfig
    method = "SgMg"
    mask_stride = 1
    track_stride = 2  # the tracks read every query's masks on the stride-2 grid of the priors

    def __init__(self, cfg: SgMgConfig):
        super().__init__(cfg)
        c = cfg.hidden_dim
        self.build_parts(cfg)
        self.text_proj = FeatureResizer(self.text_encoder.width, c, 0.1)
        self.sentence_proj = FeatureResizer(self.text_encoder.sentence_dim, c, 0.1)
        if cfg.spectrum:
            self.input_fft = nn.ModuleList(SpectrumModulation(c, cfg.spectrum_sigma) for _ in range(cfg.levels))
            self.input_fft_post = nn.ModuleList(SpectrumModulation(c, cfg.spectrum_sigma) for _ in range(cfg.levels))
        self.fusion_module = WordFusion(c, cfg.fusion_heads, "multiply")
        channels = self.backbone.channels
        out = cfg.mask_channels if cfg.prior_stride == 8 else cfg.mask_channels // 4  # 4 at stride 4 fold into 16
        self.mask_head = DynamicMaskHead(c, c, cfg.mask_channels, cfg.controller_layers, stride=cfg.prior_stride,
                                         rel_coord=cfg.rel_coord, out_channels=out)
        self.stride4_proj = None
        if cfg.prior_stride == 4 or cfg.proposals:  # the backbone's stride-4 map, projected as the input levels
            self.stride4_proj = input_projection(nn.Conv2d(channels[0], c, 1), 32)
        self.mask_refine = SegmentOptimize(cfg.mask_channels, (channels[0], channels[1]), fine_channels=cfg.fine)
        self.fine_stem = FineStem(cfg.fine, 32) if cfg.fine else None  # GroupNorm(32) as the input projections
        self.proposals = ProposalHead(c, c, cfg.queries, relative=False) if cfg.proposals else None
        self.window_invariant = not self.backbone.temporal
        self.build_track_grounding(cfg.track)

    # ------------------------------------------------------------------------------------------- text

    def encode_text(self, text: TextInputs) -> EncodedText:
        t = self.text_encoder.forward_text(text)
        return EncodedText(self.text_proj(t.words), t.padding, sine_text(t.padding, self.cfg.hidden_dim),
                           self.sentence_proj(t.sentence))

    # ------------------------------------------------------------------------------------------- stages

    def encode_images(self, frames: torch.Tensor, clip_length: int) -> dict:
        """frames (N, 3, H, W) in [0, 1], N = clips x clip_length -> what does not depend on the sentence: the
        backbone's maps, the padding (N, H', W') of the frames padded to ``size_divisibility``, the frames' size,
        the padded frames and with ``fine`` the stem's map at stride 2 (N, fine, H'/2, W'/2)."""
        images, padding = self.pad_frames(frames)
        stride2 = self.fine_stem(images) if self.fine_stem is not None else None
        return {"features": self.backbone.forward_image(images, clip_length), "padding": padding,
                "size": tuple(frames.shape[-2:]), "stride2": stride2, "images": images}

    def encode_frames(self, frames: torch.Tensor | dict, text: EncodedText, clip_length: int) -> dict:
        """frames (N, 3, H, W) in [0, 1], N = clips x clip_length, or their :meth:`encode_images`; text per frame
        -> every decoder layer's scores (L, N, Q) and boxes (L, N, Q, 4), the 16-channel priors (L, N, Q, 16, H'/8,
        W'/8), the backbone's stride-4 and stride-8 maps and with ``fine`` the stem's stride-2 map (the refinement's
        input), the padded size (H', W'), the proposals' heatmap and its probability at each query's peak (N, Q; None
        without proposals), and the padded frames (what ``link: objects`` reads)."""
        cfg = self.cfg
        images = frames if isinstance(frames, dict) else self.encode_images(frames, clip_length)
        features, padding, (h, w) = images["features"], images["padding"], images["size"]
        srcs, masks, poss = [], [], []
        gauss = None
        for level in range(cfg.levels):
            src = self.input_proj[level](features[min(level + 1, 3)])
            mask = self.level_padding(padding, src.shape[-2:])
            if cfg.spectrum:
                src, gauss = self.input_fft[level](src, gauss)
            src = self.fusion_module(src, text.words, text.padding, text.pos)
            if cfg.spectrum:
                src, gauss = self.input_fft_post[level](src, gauss)
            srcs.append(src)
            masks.append(mask)
            poss.append(sine_2d_masked(mask, cfg.hidden_dim // 2).to(src.dtype))
        memory, shapes, ratios, flat_padding = self.transformer.encode(srcs, masks, poss)
        # the encoded levels but the coarsest (strides 8, 16, 32 of 4), bicubically upsampled to stride 8 and summed
        levels = memory.split([a * b for a, b in shapes], dim=1)[: cfg.levels - 1]
        maps = [m.transpose(1, 2).reshape(m.shape[0], -1, *s) for m, s in zip(levels, shapes)]
        mask_features = sum(F.interpolate(m, size=shapes[0], mode="bicubic", align_corners=False) for m in maps)
        stride4 = None
        if self.stride4_proj is not None:  # prior_stride 4 or proposals: the same at stride 4, with the backbone's map
            stride4 = (F.interpolate(mask_features, size=features[0].shape[-2:], mode="bicubic", align_corners=False)
                       + self.stride4_proj(features[0]))
        tgt = text.sentence[:, None].expand(-1, cfg.queries, -1)
        tgt, query_pos, reference, objectness, peaks = self.start_queries(tgt, stride4, ratios)  # learned, or at peaks
        hs, boxes = self.transformer.decode(tgt, query_pos, memory, shapes, ratios, flat_padding, self.bbox_embed,
                                            reference=reference)
        logits = torch.stack([head(x)[..., 0] for head, x in zip(self.class_embed, hs)])
        if cfg.prior_stride == 4:
            mask_features = stride4
        scale = torch.tensor([w, h], dtype=boxes.dtype, device=boxes.device)
        priors = torch.stack([self.mask_head(mask_features, x, box[..., :2].detach() * scale)
                              for x, box in zip(hs, boxes)])
        if cfg.prior_stride == 4:  # (L, N, Q, 4, H'/4, W'/4) folded into the official layout
            priors = unshuffle_half(priors.flatten(0, 2)).view(*priors.shape[:3], -1, *shapes[0])
        return {"logits": logits, "boxes": boxes, "priors": priors, "stride4": features[0], "stride8": features[1],
                "stride2": images["stride2"], "queries": hs[-1], "size": padding.shape[-2:], "objectness": objectness,
                "peaks": peaks, "images": images["images"]}

    def refine(self, priors: torch.Tensor, stride4: torch.Tensor, stride8: torch.Tensor,
               stride2: torch.Tensor | None = None) -> torch.Tensor:
        """priors (N, 16, h, w) of one query per frame, the frames' refinement input -> the full-resolution mask
        logits (N, H', W')."""
        return self.mask_refine(priors, stride4, stride8, stride2)[:, 0]

    def refine_queries(self, priors: torch.Tensor, stride4: torch.Tensor, stride8: torch.Tensor,
                       stride2: torch.Tensor | None = None, queries: list[int] | None = None) -> torch.Tensor:
        """priors (N, Q, 16, h, w) of N frames, their refinement input -> the refined mask logits (N, Q', H', W') of
        ``queries`` (every query when None)."""
        queries = range(priors.shape[1]) if queries is None else queries
        return torch.stack([self.refine(priors[:, q], stride4, stride8, stride2) for q in queries], 1)

    @torch.no_grad()
    def link_queries(self, priors: torch.Tensor, queries: torch.Tensor, peaks: torch.Tensor | None = None,
                     images: torch.Tensor | None = None, state: tuple | ObjectLinker | None = None):
        """priors (B, T, Q, 16, h, w), decoder queries (B, T, Q, C), with ``link: objects`` their peaks' objectness
        (B, T, Q) and the padded frames (B, T, 3, H', W'), and the state the frames before left (None: none) ->
        permutations (B, T, Q) that put query q of every frame on one object, and the state that continues the
        linking: :func:`link_masks` on the priors' stride-2 masks, or an :class:`ObjectLinker` reading the mean colour
        under each mask and its centroid (in LINK_UNITs of the heatmap's stride-4 grid)."""
        masks = self.coarse_masks(priors)
        if self.cfg.link == "masks":
            return link_masks(masks > 0, queries, state)
        fg = masks > 0
        h, w = fg.shape[-2:]
        frames = F.interpolate(images.flatten(0, 1).float(), size=(h, w), mode="area").view(*fg.shape[:2], -1, h, w)
        weights = fg.float()
        area = weights.sum((-2, -1)).clamp(min=1)
        ys, xs = (torch.arange(n, device=fg.device, dtype=weights.dtype) + 0.5 for n in (h, w))
        centroids = torch.stack([(weights.sum(-2) * xs).sum(-1), (weights.sum(-1) * ys).sum(-1)], -1) / area[..., None]
        kept = suppress_duplicates(peaks.flatten(0, 1), masks.flatten(0, 1), self.cfg.link_objectness,
                                   self.cfg.duplicate_iou or 1.0).view_as(peaks)
        objects = (kept >= self.cfg.link_objectness) & fg.flatten(-2).any(-1)  # an emptied duplicate is none
        linker = state if state is not None else ObjectLinker(**OBJECT_LINKING)
        return linker.link(queries, centroids / (2 * LINK_UNIT), objects, mean_colours(fg, frames), fg), linker

    def without_duplicates(self, priors: torch.Tensor) -> torch.Tensor:
        """Every layer's priors (L, ..., Q, 16, h, w) of each frame's queries -> with ``duplicate_iou``, those of the
        duplicates of the last layer's stride-2 masks (:func:`duplicate_masks`) set to NO_MASK in every layer: their
        stride-2 masks are empty, and so are their refined ones (the refinement adds finite terms to the prior)."""
        if not self.cfg.duplicate_iou:
            return priors
        duplicate = duplicate_masks(self.coarse_masks(priors[-1]) > 0, self.cfg.duplicate_iou)
        return priors.masked_fill(duplicate[None, ..., None, None, None], NO_MASK)

    def track_masks(self, priors: torch.Tensor, stride4: torch.Tensor, stride8: torch.Tensor,
                    stride2: torch.Tensor | None) -> torch.Tensor:
        """The last layer's priors (N, Q, 16, h, w) of N frames and the frames' refinement input -> the mask logits
        the track head reads (N, Q, 4h, 4w): the stride-2 priors, or with ``track_refined`` every query's refined
        masks area-pooled to that grid (without gradient: the head reads what a mask covers, not its logits)."""
        coarse = self.coarse_masks(priors)
        if not self.cfg.track_refined:
            return coarse
        with torch.no_grad():
            refined = self.shared_cells(self.refine_queries(priors, stride4, stride8, stride2))
        return F.interpolate(refined, size=coarse.shape[-2:], mode="area")

    @property
    def shares_cells(self) -> bool:
        """Whether each frame's cells are shared among the queries (``track.exclusive``, with track grounding)."""
        return self.cfg.track.enabled and self.cfg.track.exclusive

    def shared_cells(self, masks: torch.Tensor) -> torch.Tensor:
        """Every query's refined mask logits (N, Q, H', W') of N frames -> with ``track.exclusive`` each cell left to
        the query whose logit is the highest there (:func:`exclusive_masks`: the annotated masks are a partition of the
        pixels, and a query whose mask spills onto the object beside it gives it up where that object's own query is
        surer); as they are without."""
        return exclusive_masks(masks) if self.shares_cells else masks

    @staticmethod
    def coarse_masks(priors: torch.Tensor) -> torch.Tensor:
        """priors (..., 16, h, w) -> the stride-2 mask logits (..., 4h, 4w) they are pixel-shuffled into."""
        lead, (h, w) = priors.shape[:-3], priors.shape[-2:]
        return F.pixel_shuffle(priors.flatten(0, -4), 4).view(*lead, 4 * h, 4 * w)

    # ------------------------------------------------------------------------------------------- training

    def forward(self, batch: ClipBatch) -> dict:
        """Every decoder layer's scores (L, B, T, Q) and boxes (L, B, T, Q, 4); in training also each layer's
        matched queries (L, P) of the P targets and their refined masks (L, P, T, H', W') and stride-2 priors (L, P, T,
        H'/2, W'/2), and the targets; in inference the last layer's priors of every query and the refinement's input;
        with track grounding the queries' referring logits (B, Q) and what the track loss reads."""
        b, t_len = batch.frames.shape[:2]
        text = self.encode_text(batch.text)
        frames = batch.frames.flatten(0, 1)
        out = self.encode_frames(frames, text.repeat(t_len), t_len)
        layers = out["logits"].shape[0]
        logits = out["logits"].view(layers, b, t_len, -1)
        boxes = out["boxes"].view(layers, b, t_len, *out["boxes"].shape[2:])
        priors = out["priors"].view(layers, b, t_len, *out["priors"].shape[2:])  # (L, B, T, Q, 16, h, w)
        if self.cfg.link and (not self.training or self.proposals is not None):  # the queries linked over the clip
            if not self.training:
                priors = self.without_duplicates(priors)
            # in training too with proposals, whose queries come in their peaks' order (without gradient)
            perms, _ = self.link_queries(priors[-1], *(out[k].view(b, t_len, *out[k].shape[1:])
                                                       if out[k] is not None else None
                                                       for k in ("queries", "peaks", "images")))
            logits, boxes, priors = (torch.stack([reorder(x, perms) for x in y]) for y in (logits, boxes, priors))
        outputs = {"logits": logits, "boxes": boxes, "size": tuple(out["size"])}
        if out["objectness"] is not None:
            outputs["objectness"] = out["objectness"]  # (B * T, 1, H'/4, W'/4), frame order
        if self.track_head is not None:  # the queries' tracks, read from the last layer's stride-2 masks
            images = self.descriptor_frames(out["images"])
            slot_logits = self.track_masks(priors[-1].flatten(0, 1), out["stride4"], out["stride8"], out["stride2"])
            slot_logits = slot_logits.view(b, t_len, *slot_logits.shape[1:]).transpose(1, 2)  # (B, Q, T, h, w)
            text = self.track_text(batch.text)
            slot_tracks, track_logits = self.track_logits(images, slot_logits, text)
            outputs |= {"track_logits": track_logits, "slot_tracks": slot_tracks, "slot_masks": slot_logits > 0,
                        "mask_images": images.view(b, t_len, *images.shape[1:]),
                        "object_counts": object_counts(self.track_head, text)}
        if not self.training:
            return outputs | {"priors": priors[-1], "stride4": out["stride4"], "stride8": out["stride8"],
                              "stride2": out["stride2"]}
        low = self.coarse_masks(priors)  # (L, B, T, Q, H'/2, W'/2)
        targets = referring_targets(batch, outputs["size"], self.cfg.loss.instance_targets)
        pairs = targets.clips  # each target's clip, and its frames' refinement input
        stride4, stride8, stride2 = (x.view(b, t_len, *x.shape[1:])[pairs].flatten(0, 1) if x is not None else None
                                     for x in (out["stride4"], out["stride8"], out["stride2"]))
        matched, masks, low_masks = [], [], []
        for layer in range(layers):  # match on the priors, then refine the matched queries alone
            m = match(logits[layer], boxes[layer], low[layer], targets, targets.low, self.cfg.loss)
            # with fine, the last layer's masks alone (those inference shows) through the stride-2 stage
            refined = self.refine(priors[layer, pairs, :, m].flatten(0, 1), stride4, stride8,
                                  stride2 if layer == layers - 1 else None)
            matched.append(m)
            masks.append(refined.view(len(pairs), t_len, *refined.shape[-2:]))
            low_masks.append(low[layer, pairs, :, m])
        return outputs | {"matched": torch.stack(matched), "masks": torch.stack(masks),
                          "low_masks": torch.stack(low_masks), "targets": targets}

    def loss(self, outputs: dict, batch: ClipBatch) -> dict:
        """Every decoder layer's losses (the last layer's unsuffixed, the others ``_0``, ``_1``, ...), and track
        grounding's."""
        targets = outputs["targets"]
        norm = num_valid_frames(targets.valid)
        losses = self.layer_losses(
            layer_losses(outputs["logits"][layer], outputs["boxes"][layer], outputs["matched"][layer],
                         outputs["masks"][layer], outputs["low_masks"][layer], targets, self.cfg.loss, norm)
            for layer in range(outputs["logits"].shape[0]))
        if "objectness" in outputs:  # the proposals' heatmap against the centres of the clip's targets
            losses["centre"] = self.centre_loss(outputs["objectness"], targets, outputs["logits"].shape[2])
        if self.track_head is not None:
            losses["track"] = self.track_loss(outputs, [pad_to(x, outputs["size"]) for x in batch.instances], batch)
            if self.track_head.count is not None:
                losses["track_count"] = self.track_count_loss(batch)
        return losses

    # ------------------------------------------------------------------------------------------- selection

    def postprocess(self, outputs: dict, score_threshold: float | None = None) -> list[ClipMasks]:
        self.check_threshold(score_threshold)
        probs = self.referring_probs(outputs)  # (B, T, Q)
        t_len = probs.shape[1]
        counts = outputs.get("object_counts") or [0] * len(probs)
        results = []
        for b in range(probs.shape[0]):
            frames = slice(b * t_len, (b + 1) * t_len)
            stride2 = outputs["stride2"][frames] if outputs["stride2"] is not None else None
            results.append(self.select(probs[b], outputs["priors"][b], outputs["stride4"][frames],
                                       outputs["stride8"][frames],
                                       self.chosen_queries(probs[b], score_threshold, counts[b]), score_threshold,
                                       counts[b], stride2))
        return results

    def referring_probs(self, outputs: dict) -> torch.Tensor:
        """The queries' referring probabilities (B, T, Q): their scores, or track grounding's (one per query)."""
        probs = outputs["logits"][-1].sigmoid()
        if self.track_head is None:
            return probs
        return outputs["track_logits"].sigmoid()[:, None].expand_as(probs)

    def chosen_queries(self, probs: torch.Tensor, threshold: float | None = None, count: int = 0) -> torch.Tensor:
        """The queries the selection rule may show, from their probabilities over the video (T, Q): the best by its
        mean (``top1``), or those :func:`kept_queries` keeps in some frame (``count``: as :meth:`select`'s)."""
        best = probs.sum(0).argmax()
        if self.cfg.selection == "top1":
            return best[None]
        keep = kept_queries(probs, self.cfg.score_threshold if threshold is None else threshold,
                            self.track_head is not None and self.cfg.track.keep_best, count).any(0)
        return keep.nonzero()[:, 0] if keep.any() else best[None]

    def select(self, probs: torch.Tensor, priors: torch.Tensor, stride4: torch.Tensor, stride8: torch.Tensor,
               queries: torch.Tensor, threshold: float | None = None, count: int = 0,
               stride2: torch.Tensor | None = None) -> ClipMasks:
        """probs (T, Q); priors (T, Q, 16, h, w); the frames' refinement input -> the chosen ``queries``
        (:meth:`chosen_queries`, over the whole video) refined in every frame, and the rule's masks and scores: the
        official one query, or their union (``count``: how many objects the sentence refers to, as ``track.count``'s
        classifier reads it; 0: no such reading)."""
        if self.shares_cells:  # every query refined, the cells shared, then the chosen ones taken
            masks = self.shared_cells(self.refine_queries(priors, stride4, stride8, stride2))[:, queries]
        else:
            masks = self.refine_queries(priors, stride4, stride8, stride2, queries.tolist())
        if self.cfg.selection == "top1":
            return top_query(probs[:, queries], masks)
        keep_best = self.track_head is not None and self.cfg.track.keep_best
        return union_of_queries(probs[:, queries], masks, self.cfg.score_threshold if threshold is None else threshold,
                                keep_best, count)

    # ------------------------------------------------------------------------------------------- inference

    def start_session(self, text: TextInputs, score_threshold: float | None = None) -> "SgMgSession":
        self.check_threshold(score_threshold)
        return SgMgSession(self, text, score_threshold)

    # ------------------------------------------------------------------------------------------- reporting

    def describe(self) -> dict:
        cfg = self.cfg
        b = cfg.backbone
        x = cfg.transformer
        return {
            "text_encoder": {"model": cfg.text.model, "frozen_setting": cfg.text.frozen, "width": self.text_encoder.width},
            "backbone": {"model": f"video Swin-{b.variant.upper()}" if b.kind == "video_swin" else b.timm_model,
                         "channels": list(self.backbone.channels)},
            "input_fft": {"levels": cfg.levels, "sigma": cfg.spectrum_sigma} if cfg.spectrum else {},
            "transformer": {"encoder_layers": x.enc_layers, "decoder_layers": x.dec_layers, "heads": x.heads,
                            "points": x.dec_points, "queries_per_frame": cfg.queries},
            "mask_head": {"channels": cfg.mask_channels, "convolutions": cfg.controller_layers,
                          "stride": cfg.prior_stride}
            | ({"stride_2_stage": f"a {cfg.fine}-channel stem on the frames"} if cfg.fine else {}),
            "queries": "at the peaks of a centre heatmap (stride 4)" if cfg.proposals else "learned positions",
            "selection": {"rule": "top-1 query (best mean score over the video)" if cfg.selection == "top1"
                          else union_rule(cfg.score_threshold, cfg.track),
                          "score": ("track grounding (the queries' refined masks at stride 2)" if cfg.track_refined
                                    else "track grounding (the queries' stride-2 priors)") if cfg.track.enabled
                          else "the query's class",
                          "track": ("each frame's queries linked to the frames' before by their stride-2 masks"
                                    if cfg.link == "masks" else "each frame's queries linked to the frames' before as "
                                    "objects (place, colour and mask of those whose peak passes "
                                    f"{cfg.link_objectness})")
                          + (f" (a query whose mask overlaps a larger one's at IoU > {cfg.duplicate_iou} emptied)"
                             if cfg.duplicate_iou else "") if cfg.link else "query q of every frame"},
        }


class SgMgSession(InferenceSession):
    """Pass one keeps every frame's query scores per sentence; :meth:`decode` picks each sentence's queries over the
    whole video; pass two encodes each window again and refines those queries (the last observed window's encoding is
    kept, so a video of one window is encoded once). A temporal backbone sees one window at a time: set
    ``infer.window`` to the videos' length to encode them whole, as the official inference does.

    With track grounding pass one also keeps every window's stride-2 masks of every query (per frame, sentence and
    query H/2 x W/2 logits: the priors, or with ``track_refined`` the refined masks pooled to that grid) and its
    frames as the descriptors read them; :meth:`decode` scores the queries' tracks over the whole video.

    With ``model.link`` each window's queries are linked to the windows' before (per sentence,
    :meth:`SgMgModel.link_queries`), and the permutations kept, so that a window encoded again in pass two is read in the
    same order."""

    def __init__(self, model: SgMgModel, text: TextInputs, score_threshold: float | None = None):
        self.model, self.threshold = model, score_threshold
        self.text = model.encode_text(text)
        self.count = text["input_ids"].shape[0]
        self.probs: list[list[torch.Tensor]] = [[] for _ in range(self.count)]  # per sentence, per window (n, Q)
        self.cache = LastWindow()
        self.chosen: list[torch.Tensor] = []
        tracked = model.track_head is not None
        self.coarse: list[list[torch.Tensor]] | None = [[] for _ in range(self.count)] if tracked else None
        self.images: list[torch.Tensor] = []  # track grounding: per window the frames as the descriptors read them
        self.track_text = model.track_text(text) if tracked else None
        # track.count: how many objects each sentence refers to (0: the threshold decides)
        self.object_counts = object_counts(model.track_head, self.track_text) if tracked else [0] * self.count
        self.perms: dict[int, list[torch.Tensor]] = {}  # with model.link: per window start, per sentence (n, Q)
        self.link_state: list[tuple | ObjectLinker | None] = [None] * self.count

    def _encode(self, frames: torch.Tensor) -> list[dict]:
        n = frames.shape[0]
        images = self.model.encode_images(frames, n)  # the backbone reads no sentence: once for all of them
        return [self.model.encode_frames(images, self.text.take(k, n), n) for k in range(self.count)]

    def _linked(self, outs: list[dict], start: int) -> list[dict]:
        """A window's encodings with each sentence's queries in its slots' order (linked when first observed)."""
        if not self.model.cfg.link:
            return outs
        outs = [out | {"priors": self.model.without_duplicates(out["priors"])} for out in outs]
        if start not in self.perms:
            perms = []
            for k, out in enumerate(outs):
                p, self.link_state[k] = self.model.link_queries(
                    *(x[None] if x is not None else None
                      for x in (out["priors"][-1], out["queries"], out["peaks"], out["images"])), self.link_state[k])
                perms.append(p[0])
            self.perms[start] = perms
        return [out | {name: reorder(out[name], p.expand(out[name].shape[0], -1, -1))  # each layer's (n, Q, ...)
                       for name in ("logits", "boxes", "priors")}
                for out, p in zip(outs, self.perms[start])]

    def observe(self, frames: torch.Tensor, start: int) -> None:
        outs = self.cache.keep(start, self._linked(self._encode(frames), start))
        for k, out in enumerate(outs):
            self.probs[k].append(out["logits"][-1].sigmoid())
            if self.coarse is not None:
                self.coarse[k].append(self.model.track_masks(out["priors"][-1], out["stride4"], out["stride8"],
                                                             out["stride2"]))
        if self.coarse is not None:  # the padded frames every sentence's encoding shares
            self.images.append(self.model.descriptor_frames(outs[0]["images"]))

    def decode(self) -> None:
        self.probs = [torch.cat(p) for p in self.probs]
        if self.coarse is not None:  # every frame's stride-2 masks -> the queries' tracks over the video
            images = torch.cat(self.images)
            for k in range(self.count):
                masks = torch.cat(self.coarse[k]).transpose(0, 1)[None]  # (1, Q, T, h, w)
                _, logits = self.model.track_logits(images, masks, self.track_text[k:k + 1])
                self.probs[k] = logits.sigmoid().expand_as(self.probs[k])
            self.coarse, self.images = None, []
        self.chosen = [self.model.chosen_queries(p, self.threshold, count)
                       for p, count in zip(self.probs, self.object_counts)]

    def _window(self, frames: torch.Tensor, start: int) -> list[dict]:
        return self.cache.get(start, lambda: self._linked(self._encode(frames), start))

    def candidates(self, frames: torch.Tensor, start: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = frames.shape[0]
        out = []
        for k, enc in enumerate(self._window(frames, start)):
            masks = self.model.refine_queries(enc["priors"][-1], enc["stride4"], enc["stride8"], enc["stride2"])
            out.append((self.probs[k][start : start + n], self.model.shared_cells(masks)))
        return out

    def prior_masks(self, frames: torch.Tensor, start: int) -> list[torch.Tensor]:
        """Per sentence, every query's stride-2 prior logits (n, Q, H'/2, W'/2) in the window, in the queries' order
        of :meth:`candidates`: what the dynamic head draws before the refinement. For diagnosis."""
        return [self.model.coarse_masks(enc["priors"][-1]) for enc in self._window(frames, start)]

    def prior_boxes(self, frames: torch.Tensor, start: int) -> list[torch.Tensor]:
        """Per sentence, every query's last-layer box (n, Q, 4) in the window (cx, cy, w, h in [0, 1] of the frames'
        unpadded size), in the queries' order of :meth:`candidates`: the box whose centre the dynamic head's relative
        coordinates read. For diagnosis."""
        return [enc["boxes"][-1] for enc in self._window(frames, start)]

    def predict(self, frames: torch.Tensor, start: int) -> list[ClipMasks]:
        n = frames.shape[0]
        return [self.model.select(self.probs[k][start : start + n], enc["priors"][-1], enc["stride4"], enc["stride8"],
                                  self.chosen[k], self.threshold, self.object_counts[k], enc["stride2"])
                for k, enc in enumerate(self._window(frames, start))]

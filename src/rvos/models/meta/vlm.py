"""The conv-CLIP referring model (PVUW 2024 MeViS 3rd place): frozen OpenCLIP ConvNeXt for image and text, a
cross-modal encoder, a frame query decoder, a video query initializer and a video query decoder.

    frames ──CLIP image──> multi-scale features ─┐
    sentence ─CLIP text──> words, sentence ──────┴─> cross-modal encoder ─> mask features, maps, words'
    maps, words', sentence ─> frame query decoder ─> per-frame queries, scores, masks        (per frame)
    frame queries ─Hungarian re-order + frame weights─> initial video queries
    video queries, all frame queries, words' ─> video query decoder ─> scores, masks           (per clip)

The output for an expression is the union of the masks of the video queries whose referring score passes
``score_threshold`` (an expression may name several objects; no query passing is an empty mask). With
``model.track.enabled`` (a CPU-size option, :mod:`rvos.models.modules.track_grounding`) the referring score is
read instead from what each query slot's frame masks cover over the clip, and the selected slots' frame masks are
the output (the video query of a slot may segment another object than the slot's frames do).

Every stage before the video decoder works on each frame alone, so long videos can be encoded in windows and
only the small frame queries kept (see :mod:`rvos.engine.inference`). With ``model.frame_decoder.propagate`` (a
CPU-size option) each frame's queries start from the previous frame's, across windows too, and query q is slot q.
With ``model.frame_decoder.proposals`` (a CPU-size option) each frame's queries start at the peaks of a learnt centre
heatmap, and the linking of adjacent frames reads the peaks' distance too; with ``model.track.link`` "objects" the
slots track only the queries whose peak is an object (a second peak on the same object is none with
``model.track.duplicate_iou``), and the others' masks are emptied in their frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.backbones.clip import CLIPBackbone
from rvos.models.criterion.losses import LossConfig, SetCriterion, per_frame_targets, similarity_loss
from rvos.models.criterion.terms import boxes_from_masks
from rvos.models.meta.base import (NO_MASK, ClipBatch, ClipMasks, InferenceSession, LastWindow, RvosModel,
                                   TextInputs, union_of_queries, union_rule)
from rvos.models.modules.frame_decoder import FrameQueryDecoder
from rvos.models.modules.pixel_decoder import CrossModalPixelDecoder, FineStem
from rvos.models.modules.proposals import LINK_UNIT, clip_centre_loss
from rvos.models.modules.query_init import ObjectLinker, VideoQueryInitializer, match_adjacent, reorder
from rvos.models.modules.track_grounding import (COLOUR, ReplayState, TrackExample, TrackGrounding,
                                                 TrackGroundingConfig, TrackReplay, clip_examples, crop_windows,
                                                 descriptor_probs, exclusive_masks, frame_descriptors,
                                                 labelled_tracks, object_counts, object_linker, on_mask_grid,
                                                 pair_labels, passing_candidates, slot_objectness, suppress_duplicates,
                                                 track_bce, track_frames, tracks, video_expressions, video_sentences)
from rvos.models.modules.video_decoder import VideoQueryDecoder


@dataclass
class BackboneConfig:
    model: str = "convnext_large_d_320"  # open_clip model name
    pretrained: str | None = "laion2b_s29b_b131k_ft_soup"  # tag, hf-hub:org/repo, file, folder; null = random
    frozen: bool = True  # no gradients, eval mode (the report's setting)
    text_frozen: bool | None = None  # the text tower alone (None: as ``frozen``)
    cache_dir: str | None = None  # Hugging Face cache folder (default: the hub's own)
    token_init_std: float | None = None  # re-initialise the token embeddings (text towers trained from scratch)
    # the sentence feature: "eot" (CLIP's end-of-text token, the report's) or "mean" (the mean of the sentence's
    # token features): a text tower trained from scratch with large token embeddings gives nearly the same
    # end-of-text feature for every sentence (cosine 0.99 measured), while the mean carries the words
    sentence_pooling: str = "eot"

    def __post_init__(self):
        if self.sentence_pooling not in ("eot", "mean"):
            raise ValueError(f"model.backbone.sentence_pooling: expected 'eot' or 'mean', got {self.sentence_pooling!r}")


@dataclass
class EncoderConfig:
    layers: int = 6
    heads: int = 8
    points: int = 4  # deformable sampling points per head and level
    ffn: int = 1024
    norm_groups: int = 32  # GroupNorm groups of the input projections
    # channels of a small stem on the frames at stride 2 (0: none): with it the mask features, and so the masks, are at
    # stride 2, the stride-4 ones upsampled plus the stem's projection (:class:`FineStem`; a CPU-size option, not the
    # report's); the proposals' heatmap stays at stride 4
    fine: int = 0


@dataclass
class FrameDecoderConfig:
    layers: int = 9
    queries: int = 20
    heads: int = 8
    ffn: int = 2048
    query_content: bool = False  # add a learned content per query to the sentence that initialises them
    # a box per query, supervised and matched with loss.box_weight / loss.giou_weight, so that a query keeps to one
    # of identical objects (:class:`FrameQueryDecoder`; a CPU-size option, not the report's)
    boxes: bool = False
    # each frame's queries start from the previous frame's (tracking by query, as TrackFormer and MOTR), and the frame
    # level is matched to the clip's objects as whole tracks: a query slot is one query's lineage over the clip, not
    # linked after decoding (:meth:`FrameQueryDecoder.propagate`; a CPU-size option, not the report's; off in the
    # per-frame control, which has no temporal path)
    propagate: bool = False
    # each frame's queries start at the peaks of a class-agnostic centre heatmap (learnt with loss.centre_weight), and
    # a query's mask has a term on the coordinates relative to its peak; adjacent frames are linked by query and peak
    # distance (:mod:`rvos.models.modules.proposals`; a CPU-size option, not the report's)
    proposals: bool = False


@dataclass
class VideoDecoderConfig:
    layers: int = 6
    queries: int = 20  # the initializer aggregates frame query slots, so this equals frame_decoder.queries
    heads: int = 8
    ffn: int = 2048
    temporal: bool = True  # False: decode each frame on its own (the per-frame control of the benchmark)
    frame_readout: bool = True  # each video query reads its frame's queries before the mask head
    time_bands: int = 8  # frequencies of the frame-time embedding


@dataclass
class VLMConfig:
    name: str = "vlm"
    hidden_dim: int = 256
    mask_dim: int = 256
    dropout: float = 0.0
    score_threshold: float = 0.5  # a video query whose referring probability passes this is part of the output
    text_score: bool = True  # referring scores: query . sentence (True) or a Linear layer on the query alone
    size_divisibility: int = 32  # inputs are padded to a multiple of this
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    frame_decoder: FrameDecoderConfig = field(default_factory=FrameDecoderConfig)
    video_decoder: VideoDecoderConfig = field(default_factory=VideoDecoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    track: TrackGroundingConfig = field(default_factory=TrackGroundingConfig)

    def __post_init__(self):
        has_boxes = bool(self.loss.box_weight or self.loss.giou_weight)
        if self.frame_decoder.boxes != has_boxes:
            raise ValueError("model.frame_decoder.boxes predicts boxes that loss.box_weight / loss.giou_weight "
                             "supervise (the frame level only): set both or neither")
        if self.track.enabled and self.track.link == "objects" and not self.frame_decoder.proposals:
            raise ValueError("model.track.link=objects tracks the proposals' peaks: set model.frame_decoder.proposals")
        if self.track.exclusive and self.track.link != "objects":
            raise ValueError("model.track.exclusive shares each frame's cells among the slots of "
                             "model.track.link=objects: set it")
        if self.frame_decoder.proposals and self.frame_decoder.propagate:
            raise ValueError("model.frame_decoder.proposals starts every frame's queries from that frame's heatmap, "
                             "model.frame_decoder.propagate from the previous frame's queries: set one of them")


@dataclass
class FrameOutputs:
    mask_features: torch.Tensor  # (N, D, h, w) at the model's mask_stride (4, or 2 with encoder.fine)
    queries: torch.Tensor  # (N, Q, C), last frame-decoder layer, normalised
    words: torch.Tensor  # (N, L, C), enhanced by the cross-modal encoder
    scores: list[torch.Tensor]  # per prediction (N, Q)
    masks: list[torch.Tensor]  # per prediction (N, Q, h, w)
    boxes: list[torch.Tensor] | None  # per prediction (N, Q, 4) (cx, cy, w, h) with frame_decoder.boxes
    last: torch.Tensor  # (N, Q, C) the last layer's raw queries (what the next frame starts from when propagating)
    objectness: torch.Tensor | None  # (N, 1, H/4, W/4) centre heatmap logits with frame_decoder.proposals
    anchors: torch.Tensor | None  # (N, Q, 2) the queries' peaks on the heatmap's grid with frame_decoder.proposals
    peaks: torch.Tensor | None  # (N, Q) the heatmap's probability at those peaks (0 at duplicates: track.duplicate_iou)


@dataclass
class VideoOutputs:
    scores: list[torch.Tensor]  # per layer (B', Q), B' = B clips (temporal) or B * T frames (per-frame)
    mask_embeds: list[torch.Tensor]  # per layer (B', T', Q, D)
    queries: torch.Tensor  # (B', Q, C)
    frame_queries: torch.Tensor  # (B', T', Q, C) re-ordered
    perms: torch.Tensor  # (B', T', Q) the slot order of each frame's queries (:func:`match_adjacent`)



def frames_of_tracks(matches: list[tuple[torch.Tensor, torch.Tensor]], frame_ids: list[torch.Tensor],
                     t_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Clip-level matches (query, clip object) -> per frame (clip major) the pairs whose object is visible there, as
    (query, index among the frame's visible objects ``frame_ids[n]``), the form of frame-level matches."""
    out = []
    for n, visible in enumerate(frame_ids):
        queries, objects = matches[n // t_len]
        position = {int(o): j for j, o in enumerate(visible)}
        keep = [j for j, o in enumerate(objects.tolist()) if o in position]
        out.append((queries[keep], torch.tensor([position[int(objects[j])] for j in keep], dtype=torch.int64)))
    return out


class VLMModel(ReplayState, RvosModel):
    config_class = VLMConfig

    def __init__(self, cfg: VLMConfig):
        super().__init__(cfg)
        if cfg.video_decoder.queries != cfg.frame_decoder.queries:
            raise ValueError("video_decoder.queries must equal frame_decoder.queries: the video query initializer "
                             "aggregates each frame query slot over time into one video query")
        self.size_divisibility = cfg.size_divisibility
        c = cfg.hidden_dim
        b = cfg.backbone
        self.backbone = CLIPBackbone(b.model, b.pretrained, frozen=b.frozen, cache_dir=b.cache_dir,
                                     token_init_std=b.token_init_std, text_frozen=b.text_frozen,
                                     sentence_pooling=b.sentence_pooling)
        self.word_proj = nn.Linear(self.backbone.width, c)
        self.sentence_proj = nn.Linear(self.backbone.sentence_dim, c)
        e = cfg.encoder
        self.encoder = CrossModalPixelDecoder(self.backbone.channels, c, cfg.mask_dim, e.layers, e.heads, e.points,
                                              e.ffn, cfg.dropout, e.norm_groups, e.fine)
        self.fine_stem = FineStem(e.fine, e.norm_groups) if e.fine else None
        self.mask_stride = 2 if e.fine else 4
        f = cfg.frame_decoder
        self.frame_decoder = FrameQueryDecoder(c, f.queries, f.layers, f.heads, f.ffn, cfg.mask_dim, cfg.dropout,
                                               text_score=cfg.text_score, query_content=f.query_content,
                                               boxes=f.boxes, proposals=f.proposals,
                                               proposal_pool=4 // self.mask_stride)
        self.query_init = VideoQueryInitializer(c)
        v = cfg.video_decoder
        self.video_decoder = VideoQueryDecoder(c, v.queries, v.layers, v.heads, v.ffn, cfg.mask_dim, cfg.dropout,
                                               v.time_bands, v.frame_readout, cfg.text_score)
        self.frame_sim = nn.Linear(c, c)
        self.video_sim = nn.Linear(c, c)
        track_text = self.backbone.width if cfg.track.text == "bag" else c
        self.track_head = (TrackGrounding(track_text, cfg.track.hidden, cfg.track.samples, cfg.track.relative_centre,
                                          cfg.track.dropout, cfg.track.crop, cfg.track.text_norm, cfg.track.count)
                           if cfg.track.enabled else None)
        self.track_replay = TrackReplay(cfg.track.replay) if cfg.track.enabled and cfg.track.replay else None
        # boxes are predicted per frame only: the video level is matched and supervised on masks and scores
        self.criterion = SetCriterion(replace(cfg.loss, box_weight=0.0, giou_weight=0.0))
        self.frame_criterion = SetCriterion(cfg.loss)
        # the slots' masks as the output reads them (model.track.slot_weight): masks only, the track head scores them
        self.slot_criterion = SetCriterion(replace(cfg.loss, score_weight=0.0, box_weight=0.0, giou_weight=0.0))
        self.expressions: dict[str, list[tuple[str, frozenset[str]]]] = {}  # per training video (track grounding)

    # ------------------------------------------------------------------------------------------- stages

    def prepare_text(self, sentences: list[str]) -> TextInputs:
        return self.backbone.tokenize(sentences)

    def encode_text(self, text: TextInputs):
        """-> words (B, L, C), padding (B, L), sentence (B, C)."""
        t = self.backbone.forward_text(text)
        return self.word_proj(t.words), t.padding, self.sentence_proj(t.sentence)

    def image_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (N, 3, H, W) in [0, 1], H and W multiples of 32 -> CLIP features at strides 4..32, after the fine
        stem's map at stride 2 with ``encoder.fine`` (the only text-independent stage: shared by every sentence about
        a video)."""
        features = self.backbone.forward_image(images)
        return [self.fine_stem(images)] + features if self.fine_stem is not None else features

    def mask_features(self, features: list[torch.Tensor], words: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """The cross-modal encoder's mask features (N, D, h, w) at :attr:`mask_stride` for text per frame (N, L,
        C)."""
        return self.encoder(features, words, padding)[0]

    @property
    def propagating(self) -> bool:
        """Whether the frame decoder carries its queries from frame to frame (``frame_decoder.propagate``; never in
        the per-frame control)."""
        return self.cfg.frame_decoder.propagate and self.cfg.video_decoder.temporal

    @property
    def links_objects(self) -> bool:
        """Whether slots track the queries on an object (``track.link`` "objects")."""
        return self.track_head is not None and self.cfg.track.link == "objects"

    def object_linker(self) -> ObjectLinker:
        """What links the queries on an object into slots with ``track.link`` "objects" (:func:`link_objects`)."""
        return object_linker(self.cfg.track)

    def on_object(self, peaks: torch.Tensor) -> torch.Tensor:
        """The heatmap's probability at each query's peak (...) -> whether the query is on an object in its frame."""
        return peaks >= self.cfg.track.min_objectness

    def even_objectness_prior(self) -> None:
        """The centre heatmap's prior set to 0.5, for a model with random weights (:meth:`ProposalHead.even_prior`)."""
        self.frame_decoder.proposals.even_prior()

    def slot_frame_masks(self, fo: "FrameOutputs") -> torch.Tensor:
        """The frame queries' last masks (N, Q, h, w), the slots' frames: with ``track.link`` "objects", emptied where
        the query's peak is no object (its query then sits on the background while the slot's object is away), and with
        ``track.exclusive`` each cell left to the query whose logit is the highest there (:func:`exclusive_masks`)."""
        masks = fo.masks[-1]
        if not self.links_objects:
            return masks
        masks = torch.where(self.on_object(fo.peaks)[..., None, None], masks, masks.new_tensor(NO_MASK))
        return exclusive_masks(masks) if self.cfg.track.exclusive else masks

    def encode_frames(self, features: list[torch.Tensor], words: torch.Tensor, padding: torch.Tensor,
                      sentence: torch.Tensor, clip_length: int | None = None,
                      init: torch.Tensor | None = None) -> FrameOutputs:
        """Cross-modal encoder and frame query decoder on each frame; text per frame (N, ...). When
        :attr:`propagating`, the N frames are clips of ``clip_length`` (default: one clip of N) decoded in order,
        the first frame starting from ``init`` (B, Q, C) when given (the previous window's last queries)."""
        mask_features, maps, words = self.encoder(features, words, padding)
        if self.propagating:
            out = self.frame_decoder.propagate(maps, mask_features, sentence, words, padding,
                                               clip_length or sentence.shape[0], init)
        else:
            out = self.frame_decoder(maps, mask_features, sentence, words, padding)
        peaks = out.peaks
        if peaks is not None and self.cfg.track.duplicate_iou:
            peaks = suppress_duplicates(peaks, out.masks[-1], self.cfg.track.min_objectness,
                                        self.cfg.track.duplicate_iou)
        return FrameOutputs(mask_features, out.queries, words, out.scores, out.masks, out.boxes, out.last,
                            out.objectness, out.anchors, peaks)

    def decode_video(self, frame_queries: torch.Tensor, words: torch.Tensor, padding: torch.Tensor,
                     sentence: torch.Tensor, anchors: torch.Tensor | None = None,
                     peaks: torch.Tensor | None = None, colours: torch.Tensor | None = None,
                     masks: torch.Tensor | None = None, perms: torch.Tensor | None = None) -> VideoOutputs:
        """frame_queries (B, T, Q, C); words (B, L, C) (the clip's mean enhanced words); sentence (B, C); anchors
        (B, T, Q, 2) the proposals' peaks on the heatmap's grid and peaks (B, T, Q) their objectness
        (``frame_decoder.proposals``), colours (B, T, Q, 3) the mean colour of each query's frame mask and masks (B,
        T, Q, h, w) those masks (:meth:`slot_frame_masks`), which the linking reads (``track.link_colour``,
        ``track.link_overlap``); or perms (B, T, Q) the slots as :meth:`object_linker` linked them already (a session
        links each window as it observes it)."""
        b, t_len = frame_queries.shape[:2]
        if not self.cfg.video_decoder.temporal:  # every frame its own clip of one frame
            one_frame = lambda x: x.flatten(0, 1)[:, None] if x is not None else None  # noqa: E731
            frame_queries, anchors, peaks, colours, masks = map(one_frame, (frame_queries, anchors, peaks, colours,
                                                                            masks))
            words = words.repeat_interleave(t_len, dim=0)
            padding = padding.repeat_interleave(t_len, dim=0)
            sentence = sentence.repeat_interleave(t_len, dim=0)
        if self.propagating:  # slot q is query q's lineage
            slots = torch.arange(frame_queries.shape[2], device=frame_queries.device)
            perms = slots.expand(frame_queries.shape[:3]).contiguous()
        elif self.links_objects:
            if perms is None:
                perms = self.object_linker().link(frame_queries, anchors / LINK_UNIT, self.on_object(peaks), colours,
                                                  masks)
        else:
            positions = anchors / LINK_UNIT if anchors is not None else None
            perms = match_adjacent(frame_queries, positions)
        ordered = reorder(frame_queries, perms)
        init = self.query_init(frame_queries, perms)
        scores, embeds, queries = self.video_decoder(init, ordered, words, padding, sentence)
        return VideoOutputs(scores, embeds, queries, ordered, perms)

    def track_text(self, text: TextInputs) -> torch.Tensor:
        """The sentences (N, D) as the track score reads them (``model.track.text``)."""
        return self.backbone.bag_of_tokens(text) if self.cfg.track.text == "bag" else self.encode_text(text)[2]

    def track_embeds(self, descriptors: torch.Tensor, windows: torch.Tensor | None = None):
        """Per-frame descriptors (B, T, K, D) of K tracks, and with ``track.crop`` their frame windows' embeddings
        (B, T, K, CROP_DIM) -> (the tracks (B, K, samples, D'), their embeddings (B, K, hidden))."""
        head = self.track_head
        track = tracks(descriptors, head.samples)
        appearance = None
        if windows is not None:
            appearance = head.appearance(*track_frames(windows, descriptors[..., 0], self.cfg.track.crop_frames))
        return track, head.embed(track, appearance)

    def track_logits(self, descriptors: torch.Tensor, perms: torch.Tensor, sentence: torch.Tensor,
                     windows: torch.Tensor | None = None):
        """Per-frame descriptors (B, T, Q, D) in frame-query order, the slot order, sentences (B, C), and with
        ``track.crop`` the frame windows' embeddings (B, T, Q, CROP_DIM) in frame-query order -> (the slots' tracks
        (B, Q, samples, D'), referring logits (B, Q))."""
        slot_tracks, embeds = self.track_embeds(reorder(descriptors, perms),
                                                None if windows is None else reorder(windows, perms))
        return slot_tracks, self.track_head.score(embeds, sentence[:, None])[:, 0]

    def frame_windows(self, frames: torch.Tensor, descriptors: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Padded frames (N, 3, H, W) and their masks' descriptors (N, Q, D) read on ``grid`` -> the windows around
        the masks (N, Q, 3, S, S) that ``track.crop`` reads."""
        return crop_windows(frames, descriptors, grid, self.cfg.track.crop)

    def descriptor_frames(self, images: torch.Tensor) -> torch.Tensor:
        """Padded frames (N, 3, H, W) -> the frames as the track descriptors read them: area-pooled to the mask grid,
        or as they are with ``track.full_resolution``."""
        if self.cfg.track.full_resolution:
            return images
        h, w = images.shape[-2] // self.mask_stride, images.shape[-1] // self.mask_stride
        return F.interpolate(images, size=(h, w), mode="area")

    def candidate_probs(self, probs: torch.Tensor, objectness: torch.Tensor | None) -> torch.Tensor:
        """The slots' referring probabilities (B, Q) with those under ``track.min_objectness`` set to 0 (in a clip
        where some slot passes)."""
        limit = self.cfg.track.min_objectness
        if objectness is None or not limit:
            return probs
        return passing_candidates(probs, objectness, limit)

    @staticmethod
    def video_masks(mask_embeds: list[torch.Tensor], mask_features: torch.Tensor) -> list[torch.Tensor]:
        """Per layer (B', T', Q, D) x (B', T', D, h, w) -> per layer (B', Q, T', h, w) logits, as one product over the
        layers: the gradient of the mask features is then one product too, instead of one per layer added up (on a
        CPU a product whose inner size is the 8 queries is bound by writing the features' size each time)."""
        q = mask_embeds[0].shape[2]
        return list(torch.einsum("btqd,btdhw->bqthw", torch.cat(mask_embeds, 2), mask_features).split(q, dim=1))

    # ------------------------------------------------------------------------------------------- training

    def forward(self, batch: ClipBatch) -> dict:
        """The frame and video predictions of the batch's clips (frames padded inside)."""
        frames = batch.frames
        b, t_len = frames.shape[:2]
        words, padding, sentence = self.encode_text(batch.text)
        per_frame = lambda x: x.repeat_interleave(t_len, dim=0)  # noqa: E731
        padded = self.pad(frames.flatten(0, 1))
        features = self.image_features(padded)
        fo = self.encode_frames(features, per_frame(words), per_frame(padding), per_frame(sentence), t_len)
        q, c = fo.queries.shape[1:]
        clip_words = fo.words.view(b, t_len, *fo.words.shape[1:]).mean(1)
        anchors = fo.anchors.view(b, t_len, q, 2) if fo.anchors is not None else None
        peaks = fo.peaks.view(b, t_len, q) if fo.peaks is not None else None
        colours = masks = None
        if self.track_head is not None:  # the slots' frames: the queries' masks and what they cover
            masks = self.slot_frame_masks(fo)  # (B*T, Q, h, w)
            images = self.descriptor_frames(padded)
            descriptors = frame_descriptors(images, descriptor_probs(masks, images.shape[-2:]))
            colours = descriptors[..., COLOUR].view(b, t_len, q, 3)
        vo = self.decode_video(fo.queries.view(b, t_len, q, c), clip_words, padding, sentence, anchors, peaks, colours,
                               masks.view(b, t_len, q, *masks.shape[-2:]) > 0 if masks is not None else None)
        t_clip = vo.mask_embeds[-1].shape[1]
        features = fo.mask_features.view(-1, t_clip, *fo.mask_features.shape[1:])
        track = {}
        if self.track_head is not None:  # per-frame decoding: every frame a track of one frame (no motion to read)
            clips, frames = (b, t_len) if t_clip == t_len else (b * t_len, 1)
            crops = windows = None
            if self.cfg.track.crop:
                crops = self.frame_windows(padded, descriptors, images.shape[-2:])
                crops = crops.view(clips, frames, *crops.shape[1:])
                windows = self.track_head.crop_embed(crops)
            descriptors = descriptors.view(clips, frames, q, -1)
            text = self.track_text(batch.text).repeat_interleave(clips // b, dim=0)
            slot_tracks, logits = self.track_logits(descriptors, vo.perms, text, windows)
            slot_logits = reorder(masks.view(clips, frames, q, *masks.shape[-2:]), vo.perms)  # (B', T', Q, h, w)
            track = {"track_logits": logits, "slot_tracks": slot_tracks, "slot_logits": slot_logits,
                     "slot_masks": slot_logits > 0, "mask_images": images.view(clips, frames, *images.shape[1:])}
            if self.track_head.count is not None:  # per clip of the batch
                track["object_counts"] = object_counts(self.track_head, text.view(b, -1, text.shape[-1])[:, 0])
            if fo.peaks is not None:
                track["slot_objectness"] = slot_objectness(fo.peaks.view(clips, frames, q), vo.perms,
                                                           descriptors[..., 0])
            if crops is not None:  # what the track loss reads: the windows of each slot's chosen frames, the frames
                chosen, present = track_frames(reorder(crops, vo.perms), reorder(descriptors, vo.perms)[..., 0],
                                               self.cfg.track.crop_frames)
                track |= {"slot_crops": chosen, "slot_present": present,
                          "crop_frames": padded.view(clips, frames, *padded.shape[1:])}
        return track | {
            "frame_scores": fo.scores,  # per prediction (B*T, Q)
            "frame_masks": fo.masks,  # per prediction (B*T, Q, h, w)
            "frame_boxes": fo.boxes,  # per prediction (B*T, Q, 4), or None
            "frame_objectness": fo.objectness,  # (B*T, 1, h, w), or None
            "frame_embeds": self.frame_sim(fo.queries),  # (B*T, Q, C)
            "video_scores": vo.scores,  # per layer (B', Q)
            "video_masks": self.video_masks(vo.mask_embeds, features),  # per layer (B', Q, T', h, w)
            "video_embeds": self.video_sim(vo.queries),  # (B', Q, C)
            "frames_per_clip": t_clip,
            "clip_length": t_len,
        }

    def loss(self, outputs: dict, batch: ClipBatch) -> dict:
        """The referred objects of each clip are its targets (objects absent from every frame left out), or every
        annotated object with ``loss.instance_targets``. Every loss is a mean over clips (see
        :mod:`rvos.models.criterion.losses`)."""
        cfg = self.cfg.loss
        t_len = outputs["clip_length"]
        targets, labels = batch.loss_targets(cfg.instance_targets)
        targets = [self.pad(t) for t in targets]
        # frame level: each frame a clip of one frame, with the objects visible in it
        frame_targets, frame_ids, frame_labels = per_frame_targets(targets, labels)
        t_clip = outputs["frames_per_clip"]
        if t_clip == t_len:
            clip_targets, clip_ids, clip_labels = targets, [torch.arange(t.shape[0]) for t in targets], labels
        else:  # per-frame video decoding: the video level is matched frame by frame too
            clip_targets, clip_ids, clip_labels = frame_targets, frame_ids, frame_labels
        losses: dict[str, torch.Tensor] = {}
        frame_matches = None
        frame_boxes = outputs["frame_boxes"] or [None] * len(outputs["frame_scores"])
        propagated = self.propagating
        boxed = targets if propagated else frame_targets
        target_boxes = [boxes_from_masks(t) for t in boxed] if self.cfg.frame_decoder.boxes else None
        # (B*T, Q, ...) -> (B, Q, T, ...)
        as_clip = lambda x: x.view(-1, t_len, *x.shape[1:]).transpose(1, 2)  # noqa: E731
        for i, (s, m, box) in enumerate(zip(outputs["frame_scores"], outputs["frame_masks"], frame_boxes)):
            if propagated:  # query q follows one object over the clip: matched to the clip's objects as tracks
                part, matches = self.frame_criterion(
                    s.view(-1, t_len, s.shape[1]).mean(1), as_clip(m), targets, None if box is None else as_clip(box),
                    labels=labels, target_boxes=target_boxes)
                frame_matches = frames_of_tracks(matches, frame_ids, t_len)
            else:  # every frame a clip of one frame
                part, frame_matches = self.frame_criterion(s, m[:, :, None], frame_targets,
                                                           None if box is None else box[:, :, None],
                                                           labels=frame_labels, target_boxes=target_boxes)
            for k, v in part.items():
                losses[f"frame_{k}_{i}"] = cfg.frame_weight * v
        video_matches = None
        for i, (s, m) in enumerate(zip(outputs["video_scores"], outputs["video_masks"])):
            part, video_matches = self.criterion(s, m, clip_targets, labels=clip_labels)
            for k, v in part.items():
                losses[f"video_{k}_{i}"] = v
        losses["similarity"] = cfg.similarity_weight * self._similarity(outputs, frame_matches, frame_ids,
                                                                        video_matches, clip_ids, t_len, t_clip)
        if outputs["frame_objectness"] is not None:
            # against every annotated object's centre with loss.instance_targets
            losses["centre"] = cfg.centre_weight * clip_centre_loss(outputs["frame_objectness"], targets, t_len)
        if self.track_head is not None:
            losses["track"] = self.cfg.track.weight * self._track_loss(outputs, batch)
            if self.track_head.count is not None:
                losses["track_count"] = self.track_count_loss(batch)
            if self.cfg.track.slot_weight:
                part, _ = self.slot_criterion(outputs["track_logits"], outputs["slot_logits"].transpose(1, 2),
                                              clip_targets, labels=clip_labels)
                losses["slot_mask"] = self.cfg.track.slot_weight * part["mask"]
                losses["slot_dice"] = self.cfg.track.slot_weight * part["dice"]
        return losses

    @property
    def reads_track_clips(self) -> bool:
        """The clips' exact tracks are whole-clip tracks without frame windows: not for a head reading windows
        (``track.crop``) or the per-frame control's one-frame tracks (no temporal path may reach it)."""
        cfg = self.cfg
        return self.track_head is not None and not cfg.track.crop and cfg.video_decoder.temporal

    def prepare_training(self, split) -> None:
        """Every expression of each training video, with the objects it refers to (the track grounding's labels)."""
        self.expressions = video_expressions(split)

    def _track_loss(self, outputs: dict, batch: ClipBatch) -> torch.Tensor:
        """BCE of every (sentence of the clip's video, track) pair: the query slots' tracks, labelled with the
        annotated object their masks cover, and the annotated objects' own tracks; a mean over the batch's clips and
        the clips drawn from the replay memory. Without the split's expressions (or the instances' ids) the clip's
        own sentence alone. The batch's ``track_clips`` add an example each (:func:`clip_examples`)."""
        head, cfg = self.track_head, self.cfg.track
        slot_masks, images = outputs["slot_masks"], outputs["mask_images"]
        h, w = slot_masks.shape[-2:]
        frames = slot_masks.shape[1]  # per track: the clip's frames, or one with per-frame decoding
        examples = []
        for b, instances in enumerate(batch.instances):
            sentences, referred = video_sentences(self.expressions, batch, b)
            t_len = instances.shape[1]
            gt = on_mask_grid(self.pad(instances), (h, w))
            # the exact tracks at the descriptors' resolution (the frames', with track.full_resolution)
            gt_read = gt if images.shape[-2:] == (h, w) else on_mask_grid(self.pad(instances), images.shape[-2:])
            for start in range(0, t_len, frames):
                n = (b * t_len + start) // frames  # the track clip
                clip_tracks, slot_of, exact = labelled_tracks(
                    outputs["slot_tracks"][n], slot_masks[n].transpose(0, 1), gt[:, start:start + frames], images[n],
                    gt_read[:, start:start + frames], head.samples, cfg.match_iou)
                crops = present = None
                if cfg.crop:
                    crops, present = outputs["slot_crops"][n], outputs["slot_present"][n]
                    if exact is not None:  # the annotated objects' windows
                        windows = self.frame_windows(outputs["crop_frames"][n], exact, images.shape[-2:])
                        exact_crops, exact_present = track_frames(windows[None], exact[None, ..., 0], cfg.crop_frames)
                        crops = torch.cat([crops, exact_crops[0]])
                        present = torch.cat([present, exact_present[0]])
                    # as frames are stored: the replay holds thousands
                    crops = (crops * 255).round().clamp(0, 255).to(torch.uint8)
                examples.append(TrackExample(clip_tracks, sentences, pair_labels(referred, slot_of), crops, present))
        if batch.track_clips is not None:
            examples += clip_examples(batch.track_clips, self.expressions, self.padded_frames, self.descriptor_frames,
                                      head.samples)
        if self.track_replay is not None:
            examples = self.track_replay.mix(examples, cfg.replay_draw)
        return track_bce(head, examples, self.track_sentences, cfg.listwise)

    def track_sentences(self, sentences: list[str]) -> torch.Tensor:
        """Sentences -> (N, D) as the track score reads them, on the model's device."""
        return self.track_text(self.prepare_text(sentences).to(next(self.track_head.parameters()).device))

    def _similarity(self, outputs, frame_matches, frame_ids, video_matches, clip_ids, t_len, t_clip):
        embeds, ids, groups = [], [], []
        for n, (q, k) in enumerate(frame_matches):
            clip = n // t_len
            embeds.append(outputs["frame_embeds"][n, q])
            ids.append(frame_ids[n][k] + 1000 * clip)
            groups.append(torch.full((len(q),), clip))
        for n, (q, k) in enumerate(video_matches):
            clip = n // (t_len // t_clip) if t_clip != t_len else n
            embeds.append(outputs["video_embeds"][n, q])
            ids.append(clip_ids[n][k] + 1000 * clip)
            groups.append(torch.full((len(q),), clip))
        device = embeds[0].device
        return similarity_loss(torch.cat(embeds), torch.cat(ids).to(device), torch.cat(groups).to(device),
                               len(frame_matches) // t_len)

    # ------------------------------------------------------------------------------------------- selection

    def select(self, probs: torch.Tensor, mask_logits: torch.Tensor, threshold: float | None = None,
               count: int = 0) -> ClipMasks:
        """The selection rule (:func:`union_of_queries`) at the config's threshold unless one is given; ``count``: how
        many objects the sentence refers to, as ``track.count``'s classifier reads it (0: no such reading)."""
        keep_best = self.track_head is not None and self.cfg.track.keep_best
        return union_of_queries(probs, mask_logits, self.cfg.score_threshold if threshold is None else threshold,
                                keep_best, count)

    def postprocess(self, outputs: dict, score_threshold: float | None = None) -> list[ClipMasks]:
        scores, masks = outputs["video_scores"][-1], outputs["video_masks"][-1]  # (B', Q), (B', Q, T', h, w)
        probs = scores.sigmoid()
        if self.track_head is not None:  # the slots' frame masks, as (B, Q, T, h, w)
            probs = self.candidate_probs(outputs["track_logits"].sigmoid(), outputs.get("slot_objectness"))
            masks = outputs["slot_logits"].transpose(1, 2)
        t_len, t_clip = outputs["clip_length"], outputs["frames_per_clip"]
        probs = probs[:, None].expand(-1, t_clip, -1).reshape(-1, t_len, scores.shape[1])
        masks = masks.transpose(1, 2).reshape(-1, t_len, *masks.shape[1:2], *masks.shape[-2:])
        counts = outputs.get("object_counts") or [0] * len(probs)
        return [self.select(p, m, score_threshold, c) for p, m, c in zip(probs, masks, counts)]

    def parameter_group(self, name: str) -> str:
        if name.startswith("backbone."):
            return "text" if self.backbone.is_text_parameter(name[len("backbone."):]) else "backbone"
        return "head"

    # ------------------------------------------------------------------------------------------- inference

    def start_session(self, text: TextInputs, score_threshold: float | None = None) -> "VLMSession":
        return VLMSession(self, text, score_threshold)

    # ------------------------------------------------------------------------------------------- reporting

    def describe(self) -> dict:
        cfg = self.cfg
        text_params = sum(p.numel() for n, p in self.backbone.named_parameters() if self.backbone.is_text_parameter(n))
        return {
            "backbone": {"model": cfg.backbone.model, "frozen_setting": cfg.backbone.frozen, "image_channels": self.backbone.channels,
                         "text_width": self.backbone.width, "text_parameters": text_params},
            "encoder": {"layers": len(self.encoder.layers), "hidden": cfg.hidden_dim, "mask_stride": self.mask_stride},
            "frame_decoder": {"layers": self.frame_decoder.num_layers, "queries": self.frame_decoder.num_queries,
                              "proposals": cfg.frame_decoder.proposals},
            "video_decoder": {"layers": self.video_decoder.num_layers, "queries": self.video_decoder.num_queries,
                              "temporal": cfg.video_decoder.temporal},
            "selection": {"rule": union_rule(cfg.score_threshold, cfg.track),
                          "score": "track grounding (the slots' frame masks)" if cfg.track.enabled
                          else "video query . sentence"}
                         | ({"slots": "the queries on an object (peak objectness >= "
                                      f"{cfg.track.min_objectness}), tracked"} if self.links_objects else {}),
        }


class VLMSession(InferenceSession):
    """Pass one keeps, per sentence, only the frame decoder's small outputs (queries, and a running sum of the
    enhanced words); :meth:`decode` runs the video decoder over every frame; pass two encodes each window again
    for its mask features (the last observed window's are kept, so a video of one window is encoded once)."""

    def __init__(self, model: VLMModel, text: TextInputs, score_threshold: float | None):
        self.model, self.threshold = model, score_threshold
        words, padding, sentence = model.encode_text(text)
        self.text = [(words[k:k + 1], padding[k:k + 1], sentence[k:k + 1]) for k in range(words.shape[0])]
        self.queries: list[list[torch.Tensor]] = [[] for _ in self.text]  # per sentence, per window (n, Q, C)
        self.anchors: list[list[torch.Tensor]] = [[] for _ in self.text]  # frame_decoder.proposals: (n, Q, 2) each
        self.peaks: list[list[torch.Tensor]] = [[] for _ in self.text]  # and the objectness there, (n, Q) each
        self.enhanced: list[torch.Tensor | None] = [None] * len(self.text)  # per sentence, sum over frames (L, C)
        self.cache = LastWindow()  # per sentence the mask features (with model.track: the frame masks)
        self.probs: list[torch.Tensor] = []  # per sentence (T, Q)
        self.embeds: list[torch.Tensor] = []  # per sentence (T, Q, D)
        self.descriptors: list[list[torch.Tensor]] = [[] for _ in self.text]  # track grounding: per window (n, Q, D)
        self.windows: list[list[torch.Tensor]] = [[] for _ in self.text]  # track.crop: per window (n, Q, CROP_DIM)
        self.track_text = model.track_text(text) if model.track_head is not None else None
        # track.count: how many objects each sentence refers to (0: the threshold decides)
        self.object_counts = (object_counts(model.track_head, self.track_text) if self.track_text is not None
                              else [0] * len(self.text))
        self.perms: list[torch.Tensor] = []  # track grounding: per sentence (T, Q), each frame's slot order
        # track.link "objects" over the clip: per sentence its linker, and per window the slot order it gave
        linked = model.links_objects and model.cfg.video_decoder.temporal and not model.propagating
        self.linkers = [model.object_linker() for _ in self.text] if linked else None
        self.linked: list[list[torch.Tensor]] = [[] for _ in self.text]
        # frame_decoder.propagate: per sentence, by start frame, the queries a window starts from (the previous
        # window's last; none for the first), so that pass two decodes a window again exactly as pass one did
        self.inits: list[dict[int, torch.Tensor]] = [{} for _ in self.text]

    def _text(self, k: int, n: int):
        words, padding, sentence = self.text[k]
        return words.expand(n, -1, -1), padding.expand(n, -1), sentence.expand(n, -1)

    def observe(self, frames: torch.Tensor, start: int) -> None:
        features = self.model.image_features(frames)
        if self.model.track_head is not None:  # the frames as every sentence's descriptors read them
            images = self.model.descriptor_frames(frames)
        cached = []
        for k in range(len(self.text)):
            fo = self.model.encode_frames(features, *self._text(k, frames.shape[0]), init=self.inits[k].get(start))
            self.inits[k][start + frames.shape[0]] = fo.last[-1:]
            self.queries[k].append(fo.queries)
            if fo.anchors is not None:
                self.anchors[k].append(fo.anchors)
                self.peaks[k].append(fo.peaks)
            enhanced = fo.words.sum(0)
            self.enhanced[k] = enhanced if self.enhanced[k] is None else self.enhanced[k] + enhanced
            if self.model.track_head is not None:
                masks = self.model.slot_frame_masks(fo)
                descriptors = frame_descriptors(images, descriptor_probs(masks, images.shape[-2:]))
                self.descriptors[k].append(descriptors)
                if self.linkers is not None:
                    self.linked[k].append(self.linkers[k].link(
                        fo.queries[None], fo.anchors[None] / LINK_UNIT, self.model.on_object(fo.peaks)[None],
                        descriptors[None, ..., COLOUR], masks[None] > 0)[0])
                if self.model.cfg.track.crop:
                    windows = self.model.frame_windows(frames, descriptors, images.shape[-2:])
                    self.windows[k].append(self.model.track_head.crop_embed(windows))
                cached.append(masks)  # the output masks are the slots' frame masks
            else:
                cached.append(fo.mask_features)
        self.cache.keep(start, cached)

    def decode(self) -> None:
        for k, (_, padding, sentence) in enumerate(self.text):
            queries = torch.cat(self.queries[k])[None]  # (1, T, Q, C)
            anchors = torch.cat(self.anchors[k])[None] if self.anchors[k] else None
            peaks = torch.cat(self.peaks[k])[None] if self.peaks[k] else None
            t_len = queries.shape[1]
            linked = torch.cat(self.linked[k])[None] if self.linkers is not None else None
            vo = self.model.decode_video(queries, (self.enhanced[k] / t_len)[None], padding, sentence, anchors, peaks,
                                         perms=linked)
            probs = vo.scores[-1].sigmoid()  # (1, Q), or (T, Q) when every frame is decoded alone
            if self.model.track_head is not None:
                temporal = self.model.cfg.video_decoder.temporal
                descriptors = torch.cat(self.descriptors[k])  # (T, Q, D): one track, or T of one frame
                descriptors = descriptors[None] if temporal else descriptors[:, None]
                windows = torch.cat(self.windows[k]) if self.windows[k] else None
                if windows is not None:
                    windows = windows[None] if temporal else windows[:, None]
                text = self.track_text[k:k + 1].expand(descriptors.shape[0], -1)
                probs = self.model.track_logits(descriptors, vo.perms, text, windows)[1].sigmoid()  # (1, Q) or (T, Q)
                if self.peaks[k]:
                    peaks = torch.cat(self.peaks[k])
                    peaks = peaks[None] if temporal else peaks[:, None]
                    objectness = slot_objectness(peaks, vo.perms, descriptors[..., 0])
                    probs = self.model.candidate_probs(probs, objectness)
                self.perms.append(vo.perms[0] if temporal else vo.perms[:, 0])
            embeds = vo.mask_embeds[-1]  # (1, T, Q, D), or (T, 1, Q, D)
            self.probs.append(probs.expand(t_len, -1) if probs.shape[0] == 1 else probs)
            self.embeds.append(embeds[0] if embeds.shape[0] == 1 else embeds[:, 0])
        self.queries, self.descriptors, self.windows, self.anchors, self.peaks, self.linked = [], [], [], [], [], []

    def candidates(self, frames: torch.Tensor, start: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = frames.shape[0]

        if self.model.track_head is not None:  # the slots' frame masks
            def encode():
                features = self.model.image_features(frames)
                return [self.model.slot_frame_masks(self.model.encode_frames(features, *self._text(k, n),
                                                                             init=self.inits[k].get(start)))
                        for k in range(len(self.text))]

            masks = self.cache.get(start, encode)
            return [(self.probs[k][start:start + n], reorder(m[None], self.perms[k][None, start:start + n])[0])
                    for k, m in enumerate(masks)]

        def encode():
            features = self.model.image_features(frames)
            return [self.model.mask_features(features, *self._text(k, n)[:2]) for k in range(len(self.text))]

        mask_features = self.cache.get(start, encode)
        return [(self.probs[k][start:start + n], torch.einsum("tqd,tdhw->tqhw", self.embeds[k][start:start + n], f))
                for k, f in enumerate(mask_features)]

    def predict(self, frames: torch.Tensor, start: int) -> list[ClipMasks]:
        return [self.model.select(probs, logits, self.threshold, count)
                for (probs, logits), count in zip(self.candidates(frames, start), self.object_counts)]

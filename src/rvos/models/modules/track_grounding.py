"""Track grounding: a referring score read from what a query's masks cover over the clip, trained on every
sentence of the clip's video.

A CPU-size option for models trained from scratch (``model.track.enabled``; off in every paper config): conv-CLIP's
slots are its frame queries linked over the clip, DsHmp's its clip queries, each with a mask in every frame. The
synthetic benchmark's diagnosis (``benchmarks/results/synth_learning.md``) found the referring score at chance
while the queries segment the objects: a score read from the query's embedding, trained on one sentence per clip,
does not learn what sentences talk about in the minutes of a CPU run. The grounding probe measured what does: a
head reading, per frame, the colour under an object's mask and the mask's geometry, with the centroid's steps over
time, learns the benchmark's language from perfect masks in one pass when every sentence of the clip's video labels
the clip's objects (top-1 0.81 against 0.63 with the clip's own sentence).

So, per frame and query: its mask's presence, the mean colour of the frame under it, its centroid, spread, area, how
much of its spread box it fills, and its shape as the kurtosis of its x and y profiles and the skewness of its y
profile (:func:`frame_descriptors`, of the mask the output would show: probabilities over 0.5, without gradient);
over the clip, each query slot's descriptors in the slot order of the video queries, resampled to ``samples`` time
points (so a track reads the same from 8 frames as from a whole video), with the centroid's steps between them
(:func:`tracks`); a small network turns a track into an embedding, whose dot product with the sentence's is the
score (:class:`TrackGrounding`). In training every expression of the clip's video scores every slot, a slot being
labelled with the annotated object its masks cover (IoU over the clip at least ``match_iou``), and the annotated
objects' own masks are scored too, so that the head learns from exact tracks from the first step.

With ``crop`` the head also reads, through a small convolutional network, a window of the frame around each mask's
centroid in a few frames of the track (:func:`crop_windows`, :func:`track_frames`): a mask on the 4x-coarser grid is a
blob, and the shape the sentence names shows in the frame, not in the mask.

The head is a few small matrix products while a step of the model costs half a second on a CPU, so the head can
see far more clips than the model: with ``replay`` the tracks and labels of the last ``replay`` clips are kept
(detached, as the descriptors are) and ``replay_draw`` of them are scored again at every step (the grounding probe's
head reached 0.89 top-1 from many passes over exact tracks, 0.81 from one). With ``data.track_clips`` the loader
also reads more clips of the training split for the head alone (:class:`~rvos.models.meta.base.TrackClips`), whose
objects' exact tracks are scored with every sentence of their videos (:func:`clip_examples`): new clips, where the
replay shows the same ones again.

With ``count`` a classifier reads from the same sentence features how many objects the sentence refers to (1 to
``count``, the last class meaning that many or more), trained on the training expressions' objects (:func:`count_loss`).
The output of a sentence read as naming one object is then the likeliest slot alone, and that of one read as naming
more the union of as many of the likeliest and every slot over the threshold
(:func:`~rvos.models.meta.base.kept_queries`): a threshold on each slot's probability alone adds a second object to a
sentence in the singular whenever another slot scores over it, and a plural sentence loses an object that scores under
it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from rvos.data.schema import normalize_text
from rvos.data.transforms import swap_left_right
from rvos.models.criterion.referformer import pad_to
from rvos.models.modules.query_init import NEW_TRACK_COST, ObjectLinker, reorder

FRAME_DIM = 13  # presence, colour (3), centroid (2), spread (2), area, fill, shape (3)
TRACK_DIM = FRAME_DIM + 2  # and the centroid's step
CROP_DIM = 32  # a track's appearance read from its frame windows (``crop``)
COLOUR = slice(1, 4)  # the mean colour (RGB) among the descriptors
CENTRE = slice(4, 6)  # the centroid (x, y) among the descriptors


@dataclass
class TrackGroundingConfig:
    enabled: bool = False
    hidden: int = 64
    samples: int = 8  # time points a track is resampled to
    weight: float = 2.0
    # the weight of a listwise term next to the BCE of each (sentence, track) pair: the cross-entropy of each
    # sentence's softmax over the clip's tracks, so that the head ranks a clip's look-alikes against each other rather
    # than scoring each alone (0: none)
    listwise: float = 0.0
    match_iou: float = 0.3  # a slot whose masks cover an annotated object this well is labelled as that object
    # the sentence as the track score reads it: "bag" (the mean of its words' token embeddings: no text transformer
    # to train first) or "sentence" (the model's sentence feature)
    text: str = "bag"
    # the best-scored slot is part of the output whatever its probability (the synthetic benchmark's expressions all
    # refer to something; off for data with no-target expressions, such as MeViS v2)
    keep_best: bool = True
    replay: int = 0  # the last clips whose tracks and labels are kept for the head (0: none)
    replay_draw: int = 32  # of those, scored again at every step
    # the slots' frame masks (the output) matched to the clip's objects as tracks and given the mask and Dice losses
    # over the whole clip, so the frame queries linked into a slot keep to one object (0: no such loss)
    slot_weight: float = 0.0
    # with model.frame_decoder.proposals: a slot whose queries' peaks have a mean objectness under this, over the frames
    # where its mask shows, is no candidate (probability 0; unless no slot passes), so that a query linked over
    # background peaks is never the output (DsHmp: its class probability, then trained as objectness; a query under it
    # is no candidate and its masks are emptied)
    min_objectness: float = 0.0
    # how the frames' queries are linked into slots: "adjacent" (each frame's queries matched to the previous frame's
    # by query and peak distance) or "objects" (with model.frame_decoder.proposals and min_objectness: only the queries
    # whose peak passes min_objectness are an object in their frame; they are tracked with a memory of each slot's
    # object while it is away, and the other queries' masks are emptied, :func:`link_objects`)
    link: str = "adjacent"
    # with link "objects", what the linking adds to a query's cost for a slot besides the query and place distances
    # (:func:`link_objects`): ``link_colour`` x the distance between the mean colours of the query's mask and the slot's
    # last one (RGB in [0, 1]), ``link_overlap`` x (1 - the IoU of their masks); and what starting a slot costs
    link_colour: float = 0.0
    link_overlap: float = 0.0
    link_new_slot: float = NEW_TRACK_COST
    # the track's centroid read relative to its mean position over the clip (where an object is says nothing a sentence
    # asks about; its steps say how it moves), so that the head cannot learn the training objects' positions
    relative_centre: bool = False
    dropout: float = 0.0  # on the track network's input and hidden layer
    # the sentence standardised (a layer norm without parameters) before the head reads it: with token embeddings that
    # start small (RoBERTa's at std 0.02, against conv-CLIP's tiny config's 1.0) a bag's norm is about 0.1, and the
    # head read "moving left" and "moving right" alike (DsHmp, benchmarks/results/synth_learning.md)
    text_norm: bool = False
    # the descriptors read the masks upsampled to the frames' resolution (bilinear, as the output is) and the frames
    # themselves, instead of both at the mask grid, where a small object is 3 x 3 cells and its shape hardly shows
    full_resolution: bool = False
    # the side, in frame pixels, of a window of the frame centred on each mask's centroid that a small convolutional
    # network reads into the track's embedding (0: none): a mask on the 4x-coarser grid is a blob that shows where an
    # object is, not its shape, while the frame shows both (:func:`crop_windows`)
    crop: int = 0
    crop_frames: int = 2  # the windows of this many frames per track, spread over those where it is present
    # with link "objects": each pixel of a frame belongs to at most one slot, the one whose query's mask logit is the
    # highest there (the annotated masks are a partition of the pixels: an object is seen where it is in front), so a
    # query whose mask spills onto the object beside it leaves that object to its own query (:func:`exclusive_masks`;
    # DsHmp: among the clip queries that pass min_objectness; SgMg: among every query's refined masks, with its
    # track_refined, in what the head reads and in the output)
    exclusive: bool = False
    # with link "objects": a query whose frame mask overlaps (IoU over this) the mask of a query with a likelier peak
    # in the same frame is no object there (:func:`suppress_duplicates`): two peaks on one object otherwise split it
    # between two slots, and the object's track moves to the second when the first peak fades (0: off)
    duplicate_iou: float = 0.0
    # how many objects a sentence refers to, read from the sentence by a classifier with classes 1 to ``count`` (the
    # last: that many or more), trained with the weight ``count_weight``; the output of a sentence read as naming one
    # object is the likeliest slot alone, of one naming more as many of the likeliest and every slot over the
    # threshold (a plural seldom says how many), instead of every slot over the threshold (0: off; requires keep_best,
    # as every sentence refers to one object at least)
    count: int = 0
    count_weight: float = 1.0

    def __post_init__(self):
        if self.link not in ("adjacent", "objects"):
            raise ValueError(f"model.track.link: expected 'adjacent' or 'objects', got {self.link!r}")
        if self.link == "objects" and not self.min_objectness:
            raise ValueError("model.track.link=objects tracks the queries whose peak passes model.track.min_objectness: "
                             "set it (e.g. 0.2)")
        if min(self.link_colour, self.link_overlap) < 0 or self.link_new_slot <= 0:
            raise ValueError("model.track.link_colour and link_overlap are weights (0 or more), link_new_slot a cost "
                             f"(more than 0); got {self.link_colour}, {self.link_overlap}, {self.link_new_slot}")
        if not 0.0 <= self.duplicate_iou < 1.0:
            raise ValueError(f"model.track.duplicate_iou: expected an IoU in [0, 1) (0: off), got {self.duplicate_iou}")
        if self.duplicate_iou and self.link != "objects":
            raise ValueError("model.track.duplicate_iou decides which queries are the objects of "
                             "model.track.link=objects: set it")
        if self.text not in ("bag", "sentence"):
            raise ValueError(f"model.track.text: expected 'bag' or 'sentence', got {self.text!r}")
        if self.replay < 0 or self.replay_draw < 0:
            raise ValueError(f"model.track.replay and replay_draw: expected >= 0, got {self.replay}, {self.replay_draw}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.track.dropout: expected a probability in [0, 1), got {self.dropout}")
        if self.listwise < 0:
            raise ValueError(f"model.track.listwise: expected a weight >= 0, got {self.listwise}")
        if self.count < 0 or self.count_weight < 0:
            raise ValueError(f"model.track.count and count_weight: expected >= 0, got {self.count}, "
                             f"{self.count_weight}")
        if self.count and not self.keep_best:
            raise ValueError("model.track.count reads how many objects (1 to count) a sentence refers to, so every "
                             "sentence keeps one slot at least: it requires model.track.keep_best (set count 0 for "
                             "data with sentences that refer to nothing)")
        if self.crop < 0 or self.crop_frames < 1:
            raise ValueError(f"model.track.crop and crop_frames: expected >= 0 and >= 1, got {self.crop}, "
                             f"{self.crop_frames}")


def frame_descriptors(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """images (N, 3, h, w) in [0, 1] at the masks' resolution, masks (N, Q, h, w) in [0, 1] (a query's probabilities,
    or an annotated object's 0 / 1) -> (N, Q, FRAME_DIM), of the cells over 0.5: the mask the output shows.

    A query's probabilities are never 0 in the background: at 0.01 over the 960 cells of a 96 x 160 frame's mask grid
    they weigh as much as a small object's 9 cells, and its colour, centroid and area would read the background.

    The shape terms tell apart what the spread and the fill cannot: a square and a diamond fill their spread box
    alike, but a square's x profile is flat (kurtosis 1.8), a diamond's a tent (2.4), a disc's a half circle (2.0),
    and a triangle's y profile is skewed. A head trained on the annotated objects' tracks as the model trains it
    (1000 steps of 2 clips, every sentence of the video, replay) picks the referred object of appearance sentences
    0.88 of the time with them, 0.75 without (``benchmarks/grounding_probe.py track-head``, mean of 3 seeds)."""
    m = (masks.detach() > 0.5).float()
    n, q, h, w = m.shape
    ys = torch.linspace(0, 1, h, device=m.device)[:, None].expand(h, w)
    xs = torch.linspace(0, 1, w, device=m.device)[None].expand(h, w)
    area = m.flatten(2).sum(-1)  # (N, Q) in pixels
    weights = m / area.clamp(min=1e-3)[..., None, None]
    colour = torch.einsum("nqhw,nchw->nqc", weights, images.float())
    cx, cy = (weights * xs).flatten(2).sum(-1), (weights * ys).flatten(2).sum(-1)
    dx, dy = xs - cx[..., None, None], ys - cy[..., None, None]
    moment = lambda d, k: (weights * d**k).flatten(2).sum(-1)  # noqa: E731
    var_x, var_y = moment(dx, 2).clamp(min=0), moment(dy, 2).clamp(min=0)
    sx, sy = var_x.sqrt(), var_y.sqrt()
    # a uniform w x h box has spreads w / sqrt(12), h / sqrt(12): fill = area / (12 sx sy), in pixels
    fill = (area / (12 * (sx * (w - 1)) * (sy * (h - 1))).clamp(min=1.0)).clamp(max=2.0)
    presence = m.flatten(2).amax(-1)
    var_x, var_y = var_x.clamp(min=1e-6), var_y.clamp(min=1e-6)  # an empty mask: shape terms 0
    shape = torch.stack([(moment(dx, 4) / var_x**2).clamp(0, 5), (moment(dy, 4) / var_y**2).clamp(0, 5),
                         (moment(dy, 3) / var_y**1.5).clamp(-3, 3)], -1)
    return torch.cat([presence[..., None], colour, torch.stack([cx, cy, sx * 4, sy * 4, area / (h * w) * 10, fill],
                                                               -1), shape], -1)


def slot_objectness(peaks: torch.Tensor, perms: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """The heatmap's probability at each frame query's peak and whether its mask shows (B, T, Q), in frame-query
    order, and the slots' order (B, T, Q) -> each slot's mean over the frames where its mask shows (over the clip
    where it shows nowhere) (B, Q): a slot following an object that leaves the frame sits on background peaks, with
    no mask, while it is gone."""
    peaks, shown = reorder(torch.stack([peaks, presence], -1), perms).unbind(-1)
    weight = torch.where(shown.sum(1, keepdim=True) > 0, shown, torch.ones_like(shown))
    return (peaks * weight).sum(1) / weight.sum(1)


def passing_candidates(probs: torch.Tensor, objectness: torch.Tensor, limit: float) -> torch.Tensor:
    """Referring probabilities (B, K) of K candidates (slots or queries) with those whose objectness (B, K) is under
    ``limit`` set to 0, in each clip where some candidate passes it (where none does, all stay candidates)."""
    passes = objectness >= limit
    return torch.where(passes | ~passes.any(1, keepdim=True), probs, torch.zeros_like(probs))


def descriptor_probs(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Queries' mask logits (N, Q, h, w) -> their probabilities at the size (h', w') of the frames the descriptors
    read (upsampled bilinearly, as the output is, when that is finer than the mask grid: ``full_resolution``)."""
    if tuple(mask_logits.shape[-2:]) != tuple(size):
        mask_logits = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
    return mask_logits.sigmoid()


def exclusive_masks(masks: torch.Tensor) -> torch.Tensor:
    """Mask logits (N, Q, h, w) -> the same where a query's logit is the highest of the frame's queries at a cell; where
    another query's logit m' is higher, the query's logit m is lowered to m - max(m', 0), under 0 when m' is over it.
    A query left out of its frame (a logit far below 0) takes nothing from the others."""
    if masks.shape[1] < 2:
        return masks
    top = masks.topk(2, dim=1)
    first, second = top.values[:, :1], top.values[:, 1:2]
    is_first = torch.arange(masks.shape[1], device=masks.device)[None, :, None, None] == top.indices[:, :1]
    best_other = torch.where(is_first, second, first)  # (N, Q, h, w) the highest logit of the other queries
    return torch.where(masks >= best_other, masks, masks - best_other.clamp(min=0))


def blob_tracks(masks: torch.Tensor, min_cells: int = 2, max_step: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask logits (Q, T, h, w) of queries that each have a mask in every frame -> each query's masks cut into the
    tracks of their connected blobs: the query of each track (K,) and where the track is (K, T, h, w) bool.

    In each frame a query's cells over 0 are split into connected blobs (4-connected) of ``min_cells`` or more; a
    query's tracks, oldest first, each take the blob of the frame whose centroid is nearest their last one, within
    ``max_step`` cells, and a blob no track takes starts a track of its own. A query whose mask shows no such blob in
    any frame is one track of its cells as they are. So a query whose mask covers two look-alikes at once becomes two
    candidates, each with the motion of one object."""
    q, t_len, h, w = masks.shape
    shown = (masks > 0).cpu().numpy()
    owners, keeps = [], []
    for query in range(q):
        tracks: list[list] = []  # per track: [last centroid, (T, h, w) bool]
        for t in range(t_len):
            labels, count = ndimage.label(shown[query, t])
            blobs = [labels == i for i in range(1, count + 1)]
            blobs = [b for b in blobs if b.sum() >= min_cells]
            centres = [np.argwhere(b).mean(0) for b in blobs]
            free = set(range(len(blobs)))
            for track in tracks:
                if not free:
                    break
                nearest = min(free, key=lambda i: float(((centres[i] - track[0]) ** 2).sum()))
                if float(np.sqrt(((centres[nearest] - track[0]) ** 2).sum())) <= max_step:
                    track[0] = centres[nearest]
                    track[1][t] = blobs[nearest]
                    free.discard(nearest)
            for i in sorted(free):
                where = np.zeros((t_len, h, w), dtype=bool)
                where[t] = blobs[i]
                tracks.append([centres[i], where])
        for _, where in tracks or [[None, shown[query]]]:
            owners.append(query)
            keeps.append(where)
    return (torch.tensor(owners, device=masks.device),
            torch.from_numpy(np.stack(keeps)).to(masks.device))


def blob_masks(masks: torch.Tensor, owners: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mask logits (Q, T, h, w) and :func:`blob_tracks`' owners (K,) and places (K, T, h, w) -> the tracks' mask
    logits (K, T, h, w): their query's logits where the track is, minus their magnitude elsewhere. The cells around a
    blob keep their (negative) logits, so that the logits upsampled bilinearly keep the blob's edge where it was (a
    far lower value there would eat into the blob); the query's other blobs turn negative."""
    logits = masks[owners]
    return torch.where(keep, logits, -logits.abs())


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Masks as 0 / 1 floats a (..., K, P) and b (..., L, P) -> their IoUs (..., K, L) (two empty masks: 0)."""
    inter = a @ b.transpose(-1, -2)
    return inter / (a.sum(-1)[..., :, None] + b.sum(-1)[..., None, :] - inter).clamp(min=1)


def greedy_duplicates(order: torch.Tensor, eligible: torch.Tensor, overlap: torch.Tensor) -> torch.Tensor:
    """Non-maximum suppression's pass over a frame's queries: their ranks ``order`` (N, Q) (query indices, first kept
    first), which may be kept (N, Q) bool and which overlap (N, Q, Q) bool -> (N, Q) bool, True for an eligible query
    that overlaps one kept before it (a duplicate); an eligible query that overlaps none is kept."""
    kept = torch.zeros_like(eligible)
    duplicate = torch.zeros_like(eligible)
    for query in order.T:  # (N,) the queries of one rank
        index = query[:, None]
        on = eligible.gather(1, index)[:, 0]
        repeats = (overlap.gather(1, index[..., None].expand(-1, 1, overlap.shape[2]))[:, 0] & kept).any(1)
        kept.scatter_(1, index, (on & ~repeats)[:, None])
        duplicate.scatter_(1, index, (on & repeats)[:, None])
    return duplicate


@torch.no_grad()
def suppress_duplicates(peaks: torch.Tensor, masks: torch.Tensor, limit: float, max_iou: float) -> torch.Tensor:
    """The heatmap's probabilities at a frame's peaks (N, Q) and the queries' mask logits (N, Q, h, w) -> the
    probabilities with those of duplicates set to 0: from the likeliest peak down, a query over ``limit`` whose mask
    (logits over 0) has an IoU over ``max_iou`` with the mask of a query kept before it is a second proposal on the same
    object, as non-maximum suppression drops a detector's second box."""
    fg = (masks > 0).flatten(2).float()
    duplicate = greedy_duplicates(peaks.argsort(dim=1, descending=True), peaks >= limit,
                                  pairwise_iou(fg, fg) > max_iou)
    return peaks.masked_fill(duplicate, 0.0)


@torch.no_grad()
def duplicate_masks(masks: torch.Tensor, max_iou: float) -> torch.Tensor:
    """masks (..., Q, h, w) bool of the queries of a frame -> (..., Q) bool, True for a duplicate: from the largest mask
    down, a query whose mask has an IoU over ``max_iou`` with the mask of a larger query that is no duplicate itself
    (:func:`suppress_duplicates` for queries without a peak: SgMg's). Empty masks are no duplicates."""
    lead, q = masks.shape[:-3], masks.shape[-3]
    flat = masks.reshape(-1, q, masks.shape[-2] * masks.shape[-1]).float()  # (N, Q, P)
    area = flat.sum(-1)
    duplicate = greedy_duplicates(area.argsort(dim=1, descending=True, stable=True), area > 0,
                                  pairwise_iou(flat, flat) > max_iou)
    return duplicate.view(*lead, q)


def on_mask_grid(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Annotated masks (M, T, H, W) -> (M, T, h, w) bool on the mask grid, a cell in the mask when more than half of it
    is: the masks the exact tracks' descriptors read."""
    m, t_len = masks.shape[:2]
    grid = F.interpolate(masks.float().flatten(0, 1)[:, None], size=size, mode="area")[:, 0]
    return grid.view(m, t_len, *size) > 0.5


def tracks(descriptors: torch.Tensor, samples: int) -> torch.Tensor:
    """Per-frame descriptors (B, T, Q, FRAME_DIM), slots in video-query order -> tracks (B, Q, samples, TRACK_DIM)."""
    b, t_len, q, d = descriptors.shape
    x = descriptors.permute(0, 2, 3, 1).reshape(b * q, d, t_len)
    x = x.repeat(1, 1, 2) if t_len == 1 else x
    x = F.interpolate(x, size=samples, mode="linear", align_corners=True).view(b, q, d, samples).transpose(2, 3)
    presence, centre = x[..., :1], x[..., CENTRE]
    step = torch.zeros_like(centre)
    step[:, :, 1:] = (centre[:, :, 1:] - centre[:, :, :-1]) * presence[:, :, 1:] * presence[:, :, :-1] * 10
    return torch.cat([x, step], -1)


def crop_windows(frames: torch.Tensor, descriptors: torch.Tensor, grid: tuple[int, int], size: int) -> torch.Tensor:
    """frames (N, 3, H, W), descriptors (N, Q, FRAME_DIM) read on a grid of ``grid`` (h, w) cells over those frames ->
    (N, Q, 3, size, size): the size x size pixels of the frame centred on each mask's centroid (bilinear; zeros beyond
    the frame; an empty mask's centroid is the first cell)."""
    n, q = descriptors.shape[:2]
    (h, w), (height, width) = grid, frames.shape[-2:]
    cx, cy = descriptors[..., CENTRE].unbind(-1)
    # a cell's centre in grid_sample's coordinates (align_corners=False: -1 and 1 are the frame's outer edges)
    x, y = (cx * (w - 1) + 0.5) / w * 2 - 1, (cy * (h - 1) + 0.5) / h * 2 - 1
    offsets = torch.arange(size, device=frames.device, dtype=frames.dtype) - (size - 1) / 2
    gx = (x[..., None, None] + offsets * (2 / width)).expand(n, q, size, size)
    gy = (y[..., None, None] + offsets[:, None] * (2 / height)).expand(n, q, size, size)
    points = torch.stack([gx, gy], -1).reshape(n, q * size, size, 2)
    crops = F.grid_sample(frames.float(), points, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.view(n, 3, q, size, size).transpose(1, 2)


def track_frames(values: torch.Tensor, presence: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame values (B, T, Q, ...) in slot order and the masks' presence (B, T, Q) -> the values of k frames of
    each slot (B, Q, k, ...), spread evenly over the frames where it is present, and whether it is (B, Q, k) (a slot
    never present: its first frame, False)."""
    present = (presence > 0.5).transpose(1, 2)  # (B, Q, T)
    count = present.sum(-1, keepdim=True)
    rank = present.cumsum(-1) - 1
    wanted = ((torch.arange(k, device=presence.device) + 0.5) * count / k).floor().long()  # (B, Q, k)
    hit = present[..., None, :] & (rank[..., None, :] == wanted[..., None])  # (B, Q, k, T)
    frames = hit.float().argmax(-1)
    b, q = frames.shape[:2]
    batch = torch.arange(b, device=frames.device)[:, None, None]
    slot = torch.arange(q, device=frames.device)[None, :, None]
    return values[batch, frames, slot], hit.any(-1)


class TrackGrounding(nn.Module):
    """score(track, sentence) = <f(track), g(sentence)> + bias.

    The head sees the few hundred objects of the training videos many times over (replay), and a network over a
    track's raw descriptors learns them by heart: on the annotated objects' exact tracks it picks the referred object
    of every training clip but of 0.886 of the unseen ones. Reading the centroid relative to the track's mean
    (``relative_centre``) and dropout raise the unseen ones to 0.931 (``benchmarks/grounding_probe.py track-head``)."""

    def __init__(self, text_dim: int, hidden: int = 64, samples: int = 8, relative_centre: bool = False,
                 dropout: float = 0.0, crop: int = 0, text_norm: bool = False, count: int = 0):
        super().__init__()
        self.samples, self.relative_centre = samples, relative_centre
        # the descriptors' scales differ by 100x (a colour against a spread): standardised by their running
        # statistics, without which a head learns 0.40 top-1 where it learns 0.66 (grounding probe, exact tracks)
        self.norm = nn.BatchNorm1d(TRACK_DIM, affine=False)
        self.frame = nn.Sequential(nn.Linear(TRACK_DIM, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        # the frame windows (``crop``): three stride-2 convolutions and a mean over the window, then over the frames
        self.crop_net = (nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                       nn.Conv2d(16, CROP_DIM, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                       nn.Flatten()) if crop else None)
        self.track = nn.Sequential(nn.Flatten(-2), nn.Linear(samples * hidden + (CROP_DIM if crop else 0), 2 * hidden),
                                   nn.ReLU(), nn.Linear(2 * hidden, hidden))
        self.dropout = nn.Dropout(dropout)  # no parameters: a checkpoint reads the same with or without it
        self.text_norm = nn.LayerNorm(text_dim, elementwise_affine=False) if text_norm else nn.Identity()
        self.text = nn.Linear(text_dim, hidden)
        self.bias = nn.Parameter(torch.tensor(-2.0))  # most (track, sentence) pairs are not referred
        # how many objects the sentence refers to: classes 1 to ``count``
        self.count = (nn.Sequential(nn.Linear(text_dim, hidden), nn.ReLU(), nn.Linear(hidden, count))
                      if count else None)

    def crop_embed(self, crops: torch.Tensor) -> torch.Tensor:
        """Frame windows (..., 3, S, S) in [0, 1] (float) or [0, 255] (uint8) -> (..., CROP_DIM)."""
        x = crops.float() / 255 if crops.dtype == torch.uint8 else crops
        return self.crop_net(x.reshape(-1, *x.shape[-3:]) - 0.5).view(*x.shape[:-3], CROP_DIM)

    @staticmethod
    def appearance(embeds: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """A track's windows' embeddings (..., k, CROP_DIM) and whether its mask is present in their frames (..., k)
        -> their mean over those frames (..., CROP_DIM) (0 for a track never present)."""
        weight = present.float()[..., None]
        return (embeds * weight).sum(-2) / weight.sum(-2).clamp(min=1)

    def embed(self, tracks: torch.Tensor, appearance: torch.Tensor | None = None) -> torch.Tensor:
        """(..., samples, TRACK_DIM), and with ``crop`` the appearance (..., CROP_DIM) of :meth:`appearance` ->
        (..., hidden)."""
        if (appearance is None) != (self.crop_net is None):
            raise ValueError("TrackGrounding.embed: the appearance is required with crop, and only then")
        if self.relative_centre:
            tracks = relative_to_mean(tracks)
        x = self.norm(tracks.reshape(-1, tracks.shape[-1])).view_as(tracks) if tracks.numel() else tracks
        flatten, hidden, relu, out = self.track
        x = flatten(self.frame(x))
        if appearance is not None:
            x = torch.cat([x, appearance], -1)
        return out(self.dropout(relu(hidden(self.dropout(x)))))

    def score(self, embeds: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
        """embeds (..., K, hidden), sentences (..., E, C) -> logits (..., E, K)."""
        text = self.text(self.text_norm(sentences))
        return text @ embeds.transpose(-1, -2) + self.bias

    def count_logits(self, sentences: torch.Tensor) -> torch.Tensor:
        """sentences (..., C) -> (..., count): the logits of 1, 2, ... objects (the last: that many or more)."""
        return self.count(self.text_norm(sentences))

    def counts(self, sentences: torch.Tensor) -> torch.Tensor:
        """sentences (..., C) -> (...) how many objects each refers to, 1 to ``count`` (long)."""
        return self.count_logits(sentences).argmax(-1) + 1


def relative_to_mean(tracks: torch.Tensor) -> torch.Tensor:
    """Tracks (..., samples, TRACK_DIM) with the centroid as an offset from its mean over the samples where the object
    is present (0 where it is absent)."""
    presence, centre = tracks[..., :1], tracks[..., CENTRE]
    mean = (centre * presence).sum(-2, keepdim=True) / presence.sum(-2, keepdim=True).clamp(min=1e-3)
    return torch.cat([tracks[..., :CENTRE.start], (centre - mean) * presence, tracks[..., CENTRE.stop:]], -1)


def slot_labels(slot_masks: torch.Tensor, instances: torch.Tensor, min_iou: float) -> torch.Tensor:
    """slot_masks (Q, T, h, w) bool, instances (M, T, h, w) bool -> (Q,) the instance each slot covers (IoU over the
    clip at least ``min_iou``), or -1."""
    if instances.shape[0] == 0:
        return torch.full((slot_masks.shape[0],), -1, dtype=torch.long)
    best, index = pairwise_iou(slot_masks.flatten(1).float(), instances.flatten(1).float()).max(1)
    return torch.where(best >= min_iou, index, torch.full_like(index, -1)).cpu()


@dataclass
class TrackExample:
    """One clip's scored pairs: its tracks (K, samples, TRACK_DIM), its sentences (E) and their labels (E, K); with
    ``crop`` each track's frame windows (K, k, 3, S, S) as uint8, and whether its mask is present in their frames
    (K, k)."""

    tracks: torch.Tensor
    sentences: list[str]
    labels: torch.Tensor
    crops: torch.Tensor | None = None
    present: torch.Tensor | None = None


class TrackReplay:
    """The track examples of the last ``size`` training clips (on the CPU), drawn at random (seeded) to be scored
    again. A checkpoint keeps it (:meth:`state`; the main process's, with DDP)."""

    def __init__(self, size: int, seed: int = 0):
        self.examples: deque[TrackExample] = deque(maxlen=size)
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.examples)

    def mix(self, examples: list[TrackExample], n: int) -> list[TrackExample]:
        """A step's new examples and ``n`` drawn from those kept before; the new ones are kept too."""
        drawn = self.draw(n)
        self.add(examples)
        return examples + drawn

    def add(self, examples: list[TrackExample]) -> None:
        cpu = lambda t: None if t is None else t.detach().cpu()  # noqa: E731
        self.examples.extend(TrackExample(cpu(e.tracks), e.sentences, cpu(e.labels), cpu(e.crops), cpu(e.present))
                             for e in examples)

    def draw(self, n: int) -> list[TrackExample]:
        return self.rng.sample(list(self.examples), min(n, len(self.examples)))

    def state(self) -> dict:
        version, mt, gauss = self.rng.getstate()
        crops = {"crops": [e.crops for e in self.examples], "present": [e.present for e in self.examples]}
        return {"tracks": [e.tracks for e in self.examples], "labels": [e.labels for e in self.examples],
                "sentences": [e.sentences for e in self.examples],
                **(crops if self.examples and self.examples[0].crops is not None else {}),
                "rng": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss}}

    def load(self, state: dict) -> None:
        self.examples.clear()
        n = len(state["tracks"])
        self.examples.extend(TrackExample(t, list(s), y, c, p) for t, s, y, c, p in
                             zip(state["tracks"], state["sentences"], state["labels"],
                                 state.get("crops", [None] * n), state.get("present", [None] * n)))
        r = state["rng"]
        self.rng.setstate((r["version"], tuple(r["state"].tolist()), r["gauss"]))


# ------------------------------------------------------------------------------------------------ training


def video_expressions(split) -> dict[str, list[tuple[str, frozenset[str]]]]:
    """Every expression of each video of a training split (:class:`~rvos.data.splits.ReferringSplit`), with the mask
    keys of the objects it refers to: the labels of the tracks of the video's clips."""
    return {v.name: [(normalize_text(e.text), frozenset(e.anno_ids)) for e in v.expressions.values()
                     if normalize_text(e.text)]
            for v in split.videos.values()}


def expression_labels(pairs: list[tuple[str, frozenset[str]]], ids: tuple[str, ...],
                      flipped: bool) -> tuple[list[str], list[torch.Tensor]]:
    """A video's expressions (:func:`video_expressions`) as a clip of it shows them (left and right swapped in a
    flipped clip), and for each the flags (M,) of the clip's instances (their mask keys ``ids``) it refers to."""
    return ([swap_left_right(t) if flipped else t for t, _ in pairs],
            [torch.tensor([i in anno for i in ids], dtype=torch.bool) for _, anno in pairs])


def video_sentences(expressions: dict, batch, b: int) -> tuple[list[str], list[torch.Tensor]]:
    """Clip ``b`` of a :class:`~rvos.models.meta.base.ClipBatch`: its sentences (every expression of its video in
    ``expressions``, or its own) as the clip shows them, and for each the flags (M_b,) of the clip's instances it
    refers to (:func:`expression_labels`)."""
    ids = batch.instance_ids[b] if batch.instance_ids is not None else None
    video = batch.video_ids[b]
    if ids is None or video not in expressions:
        return [batch.sentences[b]], [batch.referred[b].cpu()]
    return expression_labels(expressions[video], ids, batch.flipped is not None and batch.flipped[b])


def video_counts(expressions: dict, batch, b: int) -> list[int]:
    """Clip ``b`` of a :class:`~rvos.models.meta.base.ClipBatch`: for each of its sentences, in the order of
    :func:`video_sentences`, how many objects of its video it refers to (without the split's expressions, how many of
    the clip's instances its own sentence refers to, at least one)."""
    video = batch.video_ids[b]
    if batch.instance_ids is None or video not in expressions:
        return [max(1, int(batch.referred[b].sum()))]
    return [len(anno) for _, anno in expressions[video]]


def count_loss(head: TrackGrounding, sentences: list[str], counts: list[int],
               sentence_features: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """The cross-entropy of the head's count classifier on each (sentence, count) pair, a mean over the pairs; a count
    over the classifier's classes is its last class (that many or more). Every distinct sentence read once, through
    ``sentence_features`` (sentences -> (U, text_dim) on the head's device)."""
    unique = {t: i for i, t in enumerate(dict.fromkeys(sentences))}
    index = torch.tensor([unique[t] for t in sentences])
    logits = head.count_logits(sentence_features(list(unique)))
    target = torch.tensor(counts).clamp(1, logits.shape[-1]) - 1
    return F.cross_entropy(logits[index.to(logits.device)], target.to(logits.device))


def batch_count_loss(head: TrackGrounding, expressions: dict, batch,
                     sentence_features: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """:func:`count_loss` over every sentence of each clip's video (:func:`video_sentences`, :func:`video_counts`)."""
    sentences, counts = [], []
    for b in range(len(batch.sentences)):
        sentences += video_sentences(expressions, batch, b)[0]
        counts += video_counts(expressions, batch, b)
    return count_loss(head, sentences, counts, sentence_features)


def object_counts(head: TrackGrounding | None, sentences: torch.Tensor) -> list[int]:
    """Sentences (N, C) as the head reads them -> how many objects each refers to, as the head's count classifier
    reads it; 0 each (no reading: the selection's threshold decides) without one."""
    if head is None or head.count is None:
        return [0] * len(sentences)
    return head.counts(sentences).tolist()


def pair_labels(referred: list[torch.Tensor], objects: torch.Tensor) -> torch.Tensor:
    """For each sentence the flags (M,) of the clip's instances it refers to (:func:`video_sentences`) and the
    instance each track is (K,), -1 for none (:func:`labelled_tracks`) -> the labels (E, K) of the (sentence, track)
    pairs, 0 for a track that is no instance."""
    flags = torch.stack([torch.cat([r, torch.zeros(1, dtype=torch.bool)]) for r in referred])  # (E, M+1): -1 the last
    return flags[:, objects].float()


def labelled_tracks(slot_tracks: torch.Tensor, slot_masks: torch.Tensor, instances: torch.Tensor,
                    images: torch.Tensor, read: torch.Tensor, samples: int, match_iou: float):
    """One clip's tracks to score: its slots' tracks (Q, samples, TRACK_DIM) and their masks (Q, T, h, w) bool; the
    annotated objects' masks on the mask grid (M, T, h, w) bool; the frames (T, 3, h', w') and the objects' masks
    (M, T, h', w') as the descriptors read them -> (the slots' tracks, then the visible objects' exact tracks (K, ...);
    the object each of those is (K,), -1 for a slot that covers none (IoU over the clip under ``match_iou``); the
    exact tracks' per-frame descriptors (T, M', FRAME_DIM), None when no object is visible)."""
    slot_of = slot_labels(slot_masks, instances, match_iou)
    visible = instances.flatten(1).any(1).nonzero()[:, 0].cpu()
    if not len(visible):
        return slot_tracks, slot_of, None
    exact = frame_descriptors(images, read[visible].float().transpose(0, 1))
    return (torch.cat([slot_tracks, tracks(exact[None], samples)[0]]), torch.cat([slot_of, visible]), exact)


def clip_examples(clips, expressions: dict, padded_frames: Callable[[torch.Tensor], torch.Tensor],
                  descriptor_frames: Callable[[torch.Tensor], torch.Tensor], samples: int) -> list[TrackExample]:
    """Clips read for the head alone (a :class:`~rvos.models.meta.base.TrackClips`) -> one example each: the exact
    tracks of its annotated objects that show on the descriptors' grid, labelled by every sentence of its video in
    ``expressions`` (:func:`video_expressions`). ``padded_frames`` pads frames (N, 3, H, W) as the model's forward does,
    ``descriptor_frames`` brings padded frames to the grid the descriptors read (the model's methods)."""
    n, t_len = clips.frames.shape[:2]
    padded = padded_frames(clips.frames.flatten(0, 1))
    images = descriptor_frames(padded)
    images = images.view(n, t_len, *images.shape[1:])
    examples = []
    for c, objects in enumerate(clips.instances):
        video = clips.video_ids[c]
        if video not in expressions:
            raise ValueError(f"a clip read for the track head is of video {video!r}, which has no expressions: "
                             "data.track_clips labels clips by their videos' sentences, read from the training split "
                             "by model.prepare_training(split) (rvos train calls it)")
        read = on_mask_grid(pad_to(objects, padded.shape[-2:]), images.shape[-2:])
        visible = read.flatten(1).any(1).nonzero()[:, 0]
        if not len(visible):
            continue
        exact = frame_descriptors(images[c], read[visible].float().transpose(0, 1))
        sentences, referred = expression_labels(expressions[video], clips.instance_ids[c], clips.flipped[c])
        examples.append(TrackExample(tracks(exact[None], samples)[0], sentences,
                                     pair_labels(referred, visible.cpu())))
    return examples


def track_bce(head: TrackGrounding, examples: list[TrackExample],
              sentence_features: Callable[[list[str]], torch.Tensor], listwise: float = 0.0) -> torch.Tensor:
    """The mean over examples of the BCE of their (sentence, track) pairs, with ``listwise`` times the cross-entropy
    of each sentence's softmax over the clip's tracks (its referred tracks the target, evenly); every track embedded at
    once (the head's normalisation sees them together) and every distinct sentence read once, through
    ``sentence_features`` (sentences -> (U, text_dim) on the head's device)."""
    device = next(head.parameters()).device
    unique = list(dict.fromkeys(t for e in examples for t in e.sentences))
    index = {t: i for i, t in enumerate(unique)}
    text = sentence_features(unique)
    appearance = None
    if head.crop_net is not None:
        windows = head.crop_embed(torch.cat([e.crops.to(device) for e in examples]))
        appearance = head.appearance(windows, torch.cat([e.present.to(device) for e in examples]))
    embeds = head.embed(torch.cat([e.tracks.to(device) for e in examples]), appearance)  # (K, hidden)
    # every sentence against every track at once (a product of a few hundred by a few thousand), then each example's
    # pairs read from it: one loss over all pairs instead of one per example
    logits = head.score(embeds, text)  # (U, K)
    rows, cols, weights, starts = [], [], [], np.cumsum([0] + [len(e.tracks) for e in examples])
    for e, start in zip(examples, starts):
        k = len(e.tracks)
        sentences = np.array([index[t] for t in e.sentences])
        rows.append(np.repeat(sentences, k))
        cols.append(np.tile(np.arange(start, start + k), len(sentences)))
        weights.append(np.full(len(sentences) * k, 1.0 / max(len(sentences) * k, 1)))  # a mean per example
    rows, cols = torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols))
    labels = torch.cat([e.labels.to(device).flatten() for e in examples])
    weights = torch.from_numpy(np.concatenate(weights)).to(device, logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits[rows.to(device), cols.to(device)], labels, reduction="none")
    loss = (bce * weights).sum() / len(examples)
    if listwise:  # each sentence's tracks ranked against each other
        ranked = []
        for e, start in zip(examples, starts):
            labels = e.labels.to(device)
            referring = labels.sum(1) > 0  # the sentences whose objects are among the clip's tracks
            if referring.any():
                clip = logits[[index[t] for t in e.sentences]][:, start:start + len(e.tracks)]
                target = labels[referring] / labels[referring].sum(1, keepdim=True)
                ranked.append(F.cross_entropy(clip[referring], target))
        if ranked:
            loss = loss + listwise * torch.stack(ranked).sum() / len(examples)
    return loss


# ------------------------------------------------------------------------------------------------ models


def object_linker(track: TrackGroundingConfig) -> ObjectLinker:
    """What links the frame queries on an object into slots with ``track.link`` "objects", with ``track``'s weights
    (conv-CLIP's and DsHmp's, :func:`~rvos.models.modules.query_init.link_objects`)."""
    return ObjectLinker(track.link_new_slot, track.link_colour, track.link_overlap)


def check_query_tracks(track: TrackGroundingConfig, method: str, refused: tuple[str, ...] = (),
                       allowed: tuple[str, ...] = ()) -> None:
    """The options a model whose queries are tracks already (a query has a mask in every frame: DsHmp's clip queries,
    SgMg's and MUTR's queries) cannot take: those of conv-CLIP's slots of linked frame queries but the method's own
    ``allowed``, the sentence feature (the bag of token embeddings needs no text transformer trained first), and the
    method's own ``refused``."""
    if not track.enabled:
        return
    plain = TrackGroundingConfig()
    slots = [name for name in ("link", "duplicate_iou", "slot_weight", "crop", *refused)
             if name not in allowed and getattr(track, name) != getattr(plain, name)]
    if slots:
        raise ValueError(f"model.track.{slots[0]} does not apply to {method}, whose queries are tracks already (it "
                         "concerns conv-CLIP's slots of linked frame queries): leave it unset")
    if track.text != "bag":
        raise ValueError(f"model.track.text: {method}'s track grounding reads the sentence as its bag of token "
                         "embeddings ('bag')")


class ReplayState:
    """What conv-CLIP's model and those of :class:`QueryTracks` share of track grounding, mixed into them: the track
    replay memory (their ``track_replay``, a :class:`TrackReplay` or None) as the training state a checkpoint keeps
    (:meth:`~rvos.models.meta.base.RvosModel.training_state`), and the loss of ``track.count``'s classifier (read from
    their ``track_head``, ``expressions`` and ``track_sentences``)."""

    def training_state(self) -> dict:
        return {"track_replay": self.track_replay.state()} if self.track_replay is not None else {}

    def load_training_state(self, state: dict) -> None:
        if self.track_replay is not None and "track_replay" in state:
            self.track_replay.load(state["track_replay"])

    def track_count_loss(self, batch) -> torch.Tensor:
        """``track.count``'s classifier trained on every sentence of each clip's video (:func:`batch_count_loss`)."""
        return self.cfg.track.count_weight * batch_count_loss(self.track_head, self.expressions, batch,
                                                              self.track_sentences)


class QueryTracks(ReplayState):
    """Track grounding for a model whose queries are tracks (DsHmp, SgMg, MUTR), mixed into its
    :class:`~rvos.models.meta.base.RvosModel`: the head, the replay memory and the training split's expressions
    (:meth:`build_track_grounding`), the sentences as the head reads them (the bag of token embeddings of the model's
    ``text_encoder``), the queries' tracks and referring logits, and the loss. ``track_stride`` is the stride of the
    masks the tracks are read from. (The head is a submodule: :meth:`build_track_grounding` sets it, never a class
    attribute, which would hide it from ``nn.Module``'s lookup.)"""

    track_stride: int = 4

    @property
    def reads_track_clips(self) -> bool:
        return self.track_head is not None

    def build_track_grounding(self, cfg: TrackGroundingConfig) -> None:
        self.track_head = (TrackGrounding(self.text_encoder.width, cfg.hidden, cfg.samples, cfg.relative_centre,
                                          cfg.dropout, text_norm=cfg.text_norm, count=cfg.count)
                           if cfg.enabled else None)
        self.track_replay = TrackReplay(cfg.replay) if cfg.enabled and cfg.replay else None
        self.expressions: dict[str, list[tuple[str, frozenset[str]]]] = {}  # per training video

    def prepare_training(self, split) -> None:
        if self.track_head is not None:
            self.expressions = video_expressions(split)

    def descriptor_frames(self, images: torch.Tensor) -> torch.Tensor:
        """Padded frames (N, 3, H, W) -> the frames as the track descriptors read them: area-pooled to the grid of
        the masks the tracks are read from, or as they are with ``track.full_resolution``."""
        s = self.track_stride
        if self.cfg.track.full_resolution:
            return images
        return F.interpolate(images, size=(images.shape[-2] // s, images.shape[-1] // s), mode="area")

    def track_text(self, text) -> torch.Tensor:
        """The sentences (N, width) as the track score reads them: the mean of their words' token embeddings."""
        return self.text_encoder.bag_of_tokens(text)

    def track_sentences(self, sentences: list[str]) -> torch.Tensor:
        """Sentences -> (N, width) as the track score reads them, on the model's device."""
        return self.track_text(self.text_encoder.tokenize(sentences).to(next(self.track_head.parameters()).device))

    def track_embeds(self, descriptors: torch.Tensor, windows: None = None):
        """Per-frame descriptors (B, T, K, D) of K tracks -> (the tracks (B, K, samples, D'), their embeddings (B, K,
        hidden)); ``windows`` as conv-CLIP's, which alone reads frame windows (``track.crop``)."""
        track = tracks(descriptors, self.track_head.samples)
        return track, self.track_head.embed(track)

    def track_logits(self, images: torch.Tensor, masks: torch.Tensor, sentences: torch.Tensor):
        """The frames (B*T, 3, h', w') of :meth:`descriptor_frames`, the queries' mask logits (B, Q, T, h, w) and
        the sentences (B, width) as the track head reads them -> (the queries' tracks (B, Q, samples, D), referring
        logits (B, Q))."""
        b, q, t_len = masks.shape[:3]
        descriptors = self.mask_descriptors(images, masks.transpose(1, 2).flatten(0, 1))
        return self.descriptor_logits(descriptors.view(b, t_len, q, -1), sentences)

    @staticmethod
    def mask_descriptors(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The frames (N, 3, h', w') of :meth:`descriptor_frames` and mask logits (N, K, h, w) -> what the track head
        reads of each mask in its frame (N, K, FRAME_DIM)."""
        return frame_descriptors(images, descriptor_probs(masks, images.shape[-2:]))

    def descriptor_logits(self, descriptors: torch.Tensor, sentences: torch.Tensor):
        """Per-frame descriptors (B, T, K, D) of K tracks and the sentences (B, width) -> (the tracks (B, K, samples,
        D'), referring logits (B, K))."""
        track, embeds = self.track_embeds(descriptors)
        return track, self.track_head.score(embeds, sentences[:, None])[:, 0]

    def track_loss(self, outputs: dict, instances: list[torch.Tensor], batch) -> torch.Tensor:
        """BCE of every (sentence of the clip's video, track) pair: the queries' tracks (B, Q, samples, D) and masks
        (B, Q, T, h, w) bool of the forward's ``slot_tracks`` and ``slot_masks``, labelled with the annotated object
        their masks cover, and the annotated objects' own tracks (per clip (M_b, T, H', W'), padded as the frames are;
        read from the frames (B, T, 3, h', w') of :meth:`descriptor_frames`, its ``mask_images``); a mean over the
        batch's clips and the clips drawn from the replay memory. Without the split's expressions (or the instances'
        ids) the clip's own sentence alone. The batch's ``track_clips`` add an example each (:func:`clip_examples`)."""
        cfg = self.cfg.track
        slot_tracks, slot_masks, images = outputs["slot_tracks"], outputs["slot_masks"], outputs["mask_images"]
        examples = []
        for b, objects in enumerate(instances):
            sentences, referred = video_sentences(self.expressions, batch, b)
            gt = on_mask_grid(objects, slot_masks.shape[-2:])
            # the exact tracks at the descriptors' resolution (the frames', with track.full_resolution)
            read = gt if images.shape[-2:] == gt.shape[-2:] else on_mask_grid(objects, images.shape[-2:])
            clip_tracks, slot_of, _ = labelled_tracks(slot_tracks[b], slot_masks[b], gt, images[b], read,
                                                      self.track_head.samples, cfg.match_iou)
            examples.append(TrackExample(clip_tracks, sentences, pair_labels(referred, slot_of)))
        if batch.track_clips is not None:
            examples += clip_examples(batch.track_clips, self.expressions, self.padded_frames,
                                      self.descriptor_frames, self.track_head.samples)
        if self.track_replay is not None:
            examples = self.track_replay.mix(examples, cfg.replay_draw)
        return self.cfg.track.weight * track_bce(self.track_head, examples, self.track_sentences, cfg.listwise)

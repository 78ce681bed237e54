"""Video query initializer: frame queries re-ordered into a consistent instance order across frames, then
aggregated with learned frame weights.

Adjacent frames are linked as MinVIS does: frame t+1's queries are matched to frame t's (already re-ordered)
queries by the Hungarian algorithm on cosine distance, so that slot q holds the same instance in every frame. Queries
with a position (the frame decoder's proposals) add the distance between their positions to the cost.

A Linear layer scores each frame's query, a softmax over frames turns the scores into weights summing to one, and
the weighted sum of each slot over time is the initial video query.

With the proposals' peaks, :func:`link_objects` tracks instead only the queries on an object (their peak's objectness
passes a threshold), as trackers by detection do: a slot remembers its object's last query, place and velocity while
the object is out of the frame, so that it takes the object back when it returns, and a query over the background
never carries a slot from one object to another; given the queries' mask colours and masks, it weighs what the object
looks like too (:class:`ObjectLinker` links a video window by window).

:func:`link_masks` links queries by their masks instead (SgMg's, whose frame queries have no peak and look alike):
a slot follows the query whose mask overlaps the slot's last mask best; :func:`link_boxes` by their boxes (MUTR's,
whose frame queries have no mask of their own); with proposals, both can link their queries as objects instead
(``model.link: objects``, :data:`OBJECT_LINKING`). SgMg empties first the queries that show an
object a larger query of the same frame shows already (:func:`~rvos.models.modules.track_grounding.duplicate_masks`):
left in, two queries on one object split it between two slots, and a slot hops between the object and whatever its
duplicate covers in the next frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn


NEW_TRACK_COST = 1.5  # what starting a new slot costs in :func:`link_objects` (a match is a cosine distance plus a
# distance in LINK_UNIT)
# vlm_tiny_synth's weights of :class:`ObjectLinker` (its track.link_new_slot, link_colour, link_overlap), which SgMg's
# and MUTR's proposals take with ``model.link: objects``
OBJECT_LINKING = {"new_cost": 3.5, "colour_weight": 4.0, "overlap_weight": 1.0}


@torch.no_grad()
def match_adjacent(queries: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """queries (B, T, Q, C) -> permutations (B, T, Q): ``queries[b, t, perm[b, t]]`` puts frame t's queries in
    the order of frame 0's instances. ``positions`` (B, T, Q, P): each query's position, whose Euclidean distance
    to the previous frame's adds to the cosine distance (so in the unit where a step of 1 costs as much as
    orthogonal queries)."""
    b, t_len, q, _ = queries.shape
    emb = F.normalize(queries.float(), dim=-1).cpu()
    pos = positions.float().cpu() if positions is not None else None
    perms = np.zeros((b, t_len, q), dtype=np.int64)
    for i in range(b):
        perms[i, 0] = np.arange(q)
        prev = emb[i, 0]
        for t in range(1, t_len):
            cost = 1 - prev @ emb[i, t].T  # (previous slot, current query)
            if pos is not None:
                cost = cost + torch.cdist(pos[i, t - 1][perms[i, t - 1]], pos[i, t])
            rows, cols = linear_sum_assignment(cost.numpy())
            perms[i, t, rows] = cols
            prev = emb[i, t][perms[i, t]]
    return torch.from_numpy(perms).to(queries.device)


@torch.no_grad()
def link_objects(queries: torch.Tensor, positions: torch.Tensor, objects: torch.Tensor,
                 new_cost: float = NEW_TRACK_COST, colours: torch.Tensor | None = None, colour_weight: float = 0.0,
                 masks: torch.Tensor | None = None, overlap_weight: float = 0.0) -> torch.Tensor:
    """queries (B, T, Q, C), positions (B, T, Q, P), objects (B, T, Q) bool: the queries on an object -> permutations
    (B, T, Q) as :func:`match_adjacent`'s, where slot s holds one object's queries over the clip.

    Frame by frame, the queries on an object are matched (Hungarian) to the slots: a slot that has held an object
    costs the cosine distance to that object's last query plus the distance to where its last place and velocity put
    it now (however many frames ago it was seen; the velocity is a running mean, half the newest step's, half the
    estimate before) or to its last place, whichever is nearer (an object that went away may have kept moving, as
    behind another, or turned back, as at the picture's edge); a slot never used costs ``new_cost``, so that a query
    starts a new slot when it matches no remembered object better. The other queries fill the frame's remaining slots
    in their order, so a slot's query in a frame is on its object, or over the background while the object is away.
    More objects over the clip than slots: a new one takes the slot of the object least like it.

    What an object looks like adds to the cost when given: ``colours`` (B, T, Q, 3), the mean colour of each query's
    mask in its frame, ``colour_weight`` x the Euclidean distance to the colour of the slot's last query; ``masks`` (B,
    T, Q, h, w) bool, each query's mask, ``overlap_weight`` x (1 - its IoU with the slot's last non-empty mask). Two
    objects that pass close by, or one that comes out from behind another, are then told apart by their colours (where
    they differ) and where their masks were, not only by the decoder's queries, which can be alike for both, and their
    peaks.

    :class:`ObjectLinker` does the same over a video that comes in windows."""
    return ObjectLinker(new_cost, colour_weight, overlap_weight).link(queries, positions, objects, colours, masks)


class ObjectLinker:
    """:func:`link_objects` continued from window to window: each :meth:`link` links the next frames to the slots
    that the frames before left (their objects' last queries, places, velocities, colours and masks), so a session
    links a video as it observes it and keeps no frame's masks."""

    def __init__(self, new_cost: float = NEW_TRACK_COST, colour_weight: float = 0.0, overlap_weight: float = 0.0):
        self.new_cost, self.colour_weight, self.overlap_weight = new_cost, colour_weight, overlap_weight
        self.slots: list[dict] | None = None  # per clip of the batch, what its slots remember
        self.frame = 0  # the frames linked so far

    @torch.no_grad()
    def link(self, queries: torch.Tensor, positions: torch.Tensor, objects: torch.Tensor,
             colours: torch.Tensor | None = None, masks: torch.Tensor | None = None) -> torch.Tensor:
        """The next frames' queries (B, n, Q, C), positions, objects, colours and masks as :func:`link_objects`
        reads them -> their permutations (B, n, Q)."""
        b, n, q, _ = queries.shape
        emb = F.normalize(queries.float(), dim=-1).cpu().numpy()
        pos = positions.float().cpu().numpy()
        objects = objects.cpu().numpy()
        colour = colours.float().cpu().numpy() if colours is not None and self.colour_weight else None
        flat = masks.flatten(3).float().cpu().numpy() if masks is not None and self.overlap_weight else None
        if self.slots is None:
            self.slots = [{"query": np.zeros((q, emb.shape[-1]), dtype=np.float32),
                           "place": np.zeros((q, pos.shape[-1])), "velocity": np.zeros((q, pos.shape[-1])),
                           "colour": np.zeros((q, 3), dtype=np.float32),
                           "mask": np.zeros((q, flat.shape[-1]), dtype=np.float32) if flat is not None else None,
                           "seen": np.full(q, -1)} for _ in range(b)]
        perms = np.zeros((b, n, q), dtype=np.int64)
        for i, slot in enumerate(self.slots):
            for j in range(n):
                t = self.frame + j
                found = np.flatnonzero(objects[i, j])
                here = pos[i, j, found][None]
                predicted = slot["place"] + slot["velocity"] * (t - slot["seen"])[:, None]
                distance = np.minimum(np.linalg.norm(predicted[:, None] - here, axis=-1),
                                      np.linalg.norm(slot["place"][:, None] - here, axis=-1))
                cost = 1 - slot["query"] @ emb[i, j, found].T + distance  # (slot, query)
                if colour is not None:
                    cost += self.colour_weight * np.linalg.norm(slot["colour"][:, None] - colour[i, j, found][None],
                                                                axis=-1)
                if flat is not None:
                    now = flat[i, j, found]
                    inter = slot["mask"] @ now.T
                    union = slot["mask"].sum(-1)[:, None] + now.sum(-1)[None] - inter
                    cost += self.overlap_weight * (1 - inter / np.maximum(union, 1))
                cost[slot["seen"] < 0] = self.new_cost
                rows, picks = linear_sum_assignment(cost)
                for s, k in zip(rows, found[picks]):
                    if slot["seen"][s] >= 0:  # the velocity, smoothed over the frames it was seen
                        step = (pos[i, j, k] - slot["place"][s]) / (t - slot["seen"][s])
                        slot["velocity"][s] = 0.5 * slot["velocity"][s] + 0.5 * step
                    slot["query"][s], slot["place"][s], slot["seen"][s] = emb[i, j, k], pos[i, j, k], t
                    if colour is not None:
                        slot["colour"][s] = colour[i, j, k]
                    if flat is not None and flat[i, j, k].any():
                        slot["mask"][s] = flat[i, j, k]
                    perms[i, j, s] = k
                rest = np.setdiff1d(np.arange(q), rows)
                perms[i, j, rest] = np.flatnonzero(~objects[i, j])
        self.frame += n
        return torch.from_numpy(perms).to(queries.device)


@torch.no_grad()
def link_masks(masks: torch.Tensor, queries: torch.Tensor, state: tuple | None = None,
               query_weight: float = 0.5) -> tuple[torch.Tensor, tuple]:
    """masks (B, T, Q, h, w) bool and queries (B, T, Q, C) of queries decoded in each frame alone -> permutations
    (B, T, Q) as :func:`match_adjacent`'s, and the state that continues the linking in the next frames (``state``: that
    of the frames before; None: frame 0's order is the slots').

    Frame by frame, the queries are matched (Hungarian) to the slots on 1 - the IoU of a query's mask with the slot's
    last non-empty mask (so an object that vanishes for a while is sought where it was), plus ``query_weight`` x the
    cosine distance to the slot's last query (which orders the queries on no object)."""
    b, t_len, q = masks.shape[:3]
    flat = masks.flatten(3).float()
    emb = F.normalize(queries.float(), dim=-1)
    if state is None:
        last_mask, last_query, start = flat[:, 0].clone(), emb[:, 0].clone(), 1
        perms = [torch.arange(q, device=masks.device).expand(b, q)]
    else:
        (last_mask, last_query), start, perms = (x.clone() for x in state), 0, []
    for t in range(start, t_len):
        inter = last_mask @ flat[:, t].transpose(1, 2)  # (B, slot, query)
        union = last_mask.sum(-1)[:, :, None] + flat[:, t].sum(-1)[:, None] - inter
        cost = 1 - inter / union.clamp(min=1) + query_weight * (1 - last_query @ emb[:, t].transpose(1, 2))
        perm = torch.stack([torch.as_tensor(linear_sum_assignment(c.cpu().numpy())[1]) for c in cost])
        perm = perm.to(masks.device)
        now = flat[:, t].gather(1, perm[..., None].expand(-1, -1, flat.shape[-1]))
        shown = now.sum(-1, keepdim=True) > 0
        last_mask = torch.where(shown, now, last_mask)
        last_query = emb[:, t].gather(1, perm[..., None].expand(-1, -1, emb.shape[-1]))
        perms.append(perm)
    return torch.stack(perms, 1), (last_mask, last_query)


BOX_GRID = 64  # cells a side of the grid on which :func:`link_boxes` draws boxes (of [0, 1] coordinates)


@torch.no_grad()
def link_boxes(boxes: torch.Tensor, queries: torch.Tensor, state: tuple | None = None,
               query_weight: float = 0.5) -> tuple[torch.Tensor, tuple]:
    """boxes (B, T, Q, 4) (cx, cy, w, h in [0, 1]) and queries (B, T, Q, C) of queries decoded in each frame alone ->
    :func:`link_masks`'s permutations and state, on the boxes drawn as masks on a :data:`BOX_GRID`-cell grid (so a
    slot follows the query whose box overlaps the slot's last box best: MUTR's frame queries, whose masks are drawn
    by the video queries that read them)."""
    return link_masks(box_masks(boxes, (BOX_GRID, BOX_GRID)), queries, state, query_weight)


def mean_colours(masks: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Masks (B, T, Q, h, w) (bool, or 0 / 1) and the frames (B, T, 3, h, w) at their size -> the mean colour of the
    frame under each mask (B, T, Q, 3), 0 under an empty one: what :class:`ObjectLinker` weighs with its colour
    weight."""
    weights = masks.float()
    return torch.einsum("btqhw,btchw->btqc", weights, frames) / weights.sum((-2, -1)).clamp(min=1)[..., None]


def box_masks(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """boxes (..., 4) (cx, cy, w, h in [0, 1]) -> (..., h, w) bool on a grid of ``size``: the cells whose centre is in
    the box."""
    rows, cols = ((torch.arange(n, device=boxes.device, dtype=boxes.dtype) + 0.5) / n for n in size)
    cx, cy, w, h = boxes.unbind(-1)
    inside_x = (cols - cx[..., None]).abs() <= w[..., None] / 2
    inside_y = (rows - cy[..., None]).abs() <= h[..., None] / 2
    return inside_y[..., :, None] & inside_x[..., None, :]


def reorder(queries: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Apply :func:`match_adjacent`'s permutations to (B, T, Q, ...) tensors."""
    index = perms.view(*perms.shape, *([1] * (queries.dim() - 3))).expand_as(queries)
    return queries.gather(2, index)


class VideoQueryInitializer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.frame_weight = nn.Linear(dim, 1)

    def forward(self, frame_queries: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
        """frame_queries (B, T, Q, C), perms from :func:`match_adjacent` -> initial video queries (B, Q, C)."""
        ordered = reorder(frame_queries, perms)
        weights = self.frame_weight(ordered).softmax(dim=1)  # (B, T, Q, 1), sums to 1 over frames
        return (weights * ordered).sum(dim=1)

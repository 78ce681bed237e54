"""Query proposals from an objectness heatmap, a CPU-size option of the frame decoder (``frame_decoder.proposals``).

A frame's queries start at the peaks of a class-agnostic centre heatmap read from the mask features, as CenterNet
finds objects and as two-stage Deformable DETR and Mask DINO take their first queries from the encoder's best
tokens: each query's content is the mask feature at its peak (plus the sentence), its position embedding the peak's.
Each query's mask also gets a dynamic term on the coordinates relative to its peak (CondInst's relative
coordinates, here five weights per query on dx, dy, dx², dy², dx·dy, starting as the bowl -(dx² + dy²) in units of
4 cells: -0.6 at the tip of the biggest synthetic object, -6 ten cells away), so that a query can segment the object
at its peak and not every object that looks like it: a mask made only of a query embedding dotted with pixel features
covers identical objects together. Adjacent frames are linked by query and peak distance (:data:`LINK_UNIT`).

The heatmap learns a Gaussian at the mask centroid of every visible target object (CenterNet's penalty-reduced focal
loss, :func:`centre_focal_loss`); the queries start from the predicted peaks in training as at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.layers.position_encoding import sine_2d

RELATIVE_TERMS = 5  # dx, dy, dx², dy², dx·dy
LINK_UNIT = 8.0  # cells of the heatmap grid between two peaks that cost as much, in the linking, as orthogonal queries


class ProposalHead(nn.Module):
    def __init__(self, mask_dim: int, dim: int, num_queries: int, scale: float = 4.0, pool: int = 1,
                 relative: bool = True):
        """``scale``: the relative coordinates' unit, in cells of the heatmap's grid; ``pool``: a heatmap cell in cells
        of the mask grid (the mask features are average-pooled by it before the heatmap reads them, so that stride-2
        mask features keep a stride-4 heatmap: peaks, their units and the linking's are those of the stride-4 grid);
        ``relative``: whether :meth:`mask_term` is used (false: a model whose masks read the peaks otherwise, as
        SgMg's dynamic head does with its boxes' centres)."""
        super().__init__()
        self.num_queries, self.scale, self.pool = num_queries, scale, pool
        self.objectness = nn.Sequential(nn.Conv2d(mask_dim, mask_dim, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(mask_dim, 1, 1))
        nn.init.constant_(self.objectness[-1].bias, -2.19)  # a prior of 0.1 (CenterNet's)
        self.content = nn.Linear(mask_dim, dim)
        self.pos = nn.Linear(dim, dim)
        self.relative = nn.Linear(dim, RELATIVE_TERMS) if relative else None
        if relative:
            nn.init.zeros_(self.relative.weight)
            with torch.no_grad():
                self.relative.bias.copy_(torch.tensor([0.0, 0.0, -1.0, -1.0, 0.0]))

    def forward(self, mask_features: torch.Tensor):
        """mask_features (N, D, H, W) -> heatmap logits (N, 1, h, w) (h = H / pool), peaks (N, Q, 2) as (x, y) on the
        heatmap's grid, their objectness (N, Q) (the heatmap's probability there), the queries' content (N, Q, C) and
        position embeddings (N, Q, C). The peaks are the ``num_queries`` best local maxima (3 x 3) of the heatmap, best
        first."""
        if self.pool > 1:  # a mean over each pool x pool block, as two sums over adjacent axes (a mean over two
            # strided axes took 20 ms forward and backward at 16 x 64 x 48 x 80 on a 2-core CPU, the sums 12)
            n, d, h, w = mask_features.shape
            p = self.pool
            rows = mask_features.view(n, d, h, w // p, p).sum(-1)
            mask_features = rows.view(n, d, h // p, p, w // p).sum(3) / (p * p)
        n, d, h, w = mask_features.shape
        if h * w < self.num_queries:
            raise ValueError(f"a {h}x{w} mask grid has fewer cells than the {self.num_queries} queries to propose")
        logits = self.objectness(mask_features)
        with torch.no_grad():
            heat = logits.sigmoid()
            peaks = torch.where(F.max_pool2d(heat, 3, 1, 1) == heat, heat, torch.zeros_like(heat))
            best = peaks.flatten(1).topk(self.num_queries, dim=1)
            index, objectness = best.indices, heat.flatten(1).gather(1, best.indices)  # (N, Q)
        features = mask_features.flatten(2).gather(2, index[:, None].expand(-1, d, -1)).transpose(1, 2)
        grid = sine_2d(h, w, self.pos.in_features // 2, device=mask_features.device, dtype=mask_features.dtype)
        pos = self.pos(grid.flatten(1).T[index])
        anchors = torch.stack([index % w, index // w], dim=-1).to(mask_features.dtype)
        return logits, anchors, objectness, self.content(features), pos

    def even_prior(self) -> None:
        """Set the heatmap's prior to 0.5 (its last bias to 0), for a model with random weights (tests, benchmarks):
        at the trained prior of 0.1, under a ``track.min_objectness`` of 0.2, no query would be an object and the
        masks of slots linked from objects (``track.link`` "objects") would all be empty."""
        nn.init.zeros_(self.objectness[-1].bias)

    def mask_term(self, queries: torch.Tensor, anchors: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The relative-coordinate term (N, Q, h, w) on the mask grid of ``size``, added to the mask logits of queries
        (N, Q, C) at ``anchors`` (on the heatmap's grid)."""
        h, w = size
        weights = self.relative(queries)  # (N, Q, 5)

        def at(n: int) -> torch.Tensor:
            """The mask grid's cell centres along a side of n cells, in heatmap cells (the same when pool is 1)."""
            return (torch.arange(n, device=queries.device, dtype=queries.dtype) + 0.5) / self.pool - 0.5

        dx = (at(w) - anchors[..., :1]) / self.scale  # (N, Q, w)
        dy = (at(h) - anchors[..., 1:]) / self.scale  # (N, Q, h)
        dx, dy = dx[:, :, None, :], dy[:, :, :, None]
        wt = [weights[..., k, None, None] for k in range(RELATIVE_TERMS)]
        return wt[0] * dx + wt[1] * dy + wt[2] * dx * dx + wt[3] * dy * dy + wt[4] * dx * dy


def peak_references(anchors: torch.Tensor, size: tuple[int, int], ratios: torch.Tensor) -> torch.Tensor:
    """Peaks (N, Q, 2) on a heatmap grid of ``size`` (h, w) over the padded frames -> the deformable decoder's first
    reference points (N, Q, 2): the peaks' cell centres in [0, 1] of each frame's valid area (``ratios`` (N, 2): the
    valid fraction of the padded width and height, as the decoder's valid ratios), kept off the borders."""
    cells = torch.tensor(size[::-1], dtype=anchors.dtype, device=anchors.device)  # (w, h)
    return ((anchors + 0.5) / cells / ratios[:, None]).clamp(1e-3, 1 - 1e-3)


def centre_heatmap(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Target masks (M, ..., H, W) of M objects in frames (...) -> the heatmap target (..., h, w) on the mask grid: per
    frame and object with any pixel there, a Gaussian of height 1 at the grid cell nearest its mask centroid, sigma a
    quarter of the square root of its area in cells (at least half a cell); the maximum over objects (0 without
    any)."""
    h, w = size
    frames = masks.shape[1:-2]
    target = torch.zeros(*frames, h, w, device=masks.device)
    if masks.shape[0] == 0:
        return target
    grid = F.interpolate(masks.float().reshape(-1, 1, *masks.shape[-2:]), size=size, mode="area")[:, 0]
    area = grid.flatten(1).sum(1)  # (M * frames,) fraction of each cell, summed
    present = area > 0
    ys = torch.arange(h, device=masks.device, dtype=grid.dtype)
    xs = torch.arange(w, device=masks.device, dtype=grid.dtype)
    safe = area.clamp(min=1e-6)  # an absent object's Gaussian is dropped below
    cy = ((grid.sum(2) * ys).sum(1) / safe).round()
    cx = ((grid.sum(1) * xs).sum(1) / safe).round()
    sigma = (area.sqrt() / 4).clamp(min=0.5)
    d2 = (ys[None, :, None] - cy[:, None, None]) ** 2 + (xs[None, None, :] - cx[:, None, None]) ** 2
    gauss = torch.exp(-d2 / (2 * sigma[:, None, None] ** 2)) * present[:, None, None]
    return torch.cat([target[None], gauss.view(masks.shape[0], *frames, h, w)]).amax(0)


def clip_centre_loss(objectness: torch.Tensor, targets: list[torch.Tensor], clip_length: int) -> torch.Tensor:
    """The heatmap loss (:func:`centre_focal_loss`) of each clip, a mean over clips: heatmap logits (B * T, 1, h, w),
    frame by frame in clip order, against each clip's target objects (M, T, H, W) bool, their centres on the
    heatmap's grid (:func:`centre_heatmap`)."""
    size = objectness.shape[-2:]
    return torch.stack([centre_focal_loss(objectness[b * clip_length:(b + 1) * clip_length], centre_heatmap(t, size))
                        for b, t in enumerate(targets)]).mean()


def centre_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4) of heatmap logits (N, 1, h, w) against targets
    (N, h, w): summed over cells and divided by the number of centres (cells at exactly 1), at least 1."""
    logits = logits[:, 0].float()
    centre = target == 1
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = logits.sigmoid()
    positive = (1 - p) ** 2 * log_p * centre
    negative = p ** 2 * (1 - target) ** 4 * log_not_p * ~centre
    return -(positive.sum() + negative.sum()) / centre.sum().clamp(min=1)

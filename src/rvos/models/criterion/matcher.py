"""Hungarian matching of predicted queries to target objects, for clips, with pluggable cost terms.

The cost of assigning query q to object n is a weighted sum of terms (``costs``, name -> weight):

* ``score``: minus the probability the query's score gives the target's label: ``-p_q`` for a referred object
  (Mask2Former), ``-(1 - p_q)`` for an object matched only as an instance;
* ``score_focal``: Deformable DETR's focal classification cost;
* ``mask``: mean binary cross-entropy of the masks; ``mask_focal``: mean focal loss;
* ``dice``: Dice loss of the masks;
* ``box_l1``, ``giou``: L1 and ``1 - GIoU`` of the boxes, averaged over the frames where the object is present.

Masks are compared on points sampled uniformly at random (one set of points for every query and target of a clip,
over its every frame), so the cost stays bounded at any resolution; a target of at most ``num_points`` pixels
uses every pixel (the predictions upsampled to it, as a point's logit is read).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch.nn.utils.rnn import pad_sequence

from rvos.models.criterion import terms

COSTS = ("score", "score_focal", "mask", "mask_focal", "dice", "box_l1", "giou")


def point_sample(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W), coords (N, P, 2) as (x, y) in [0, 1] -> (N, C, P), bilinear."""
    return F.grid_sample(x, 2.0 * coords[:, :, None] - 1.0, align_corners=False).squeeze(-1)


def at_target_resolution(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred (..., h, w) logits read bilinearly at every pixel of target (..., H, W) (unchanged at the same size)."""
    if pred.shape[-2:] == target.shape[-2:]:
        return pred
    return F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False)


def mask_points(pred_masks: torch.Tensor, targets: torch.Tensor, num_points: int):
    """Point logits (B, Q, T*P) and labels (B, N, T*P) of clips' predicted masks (B, Q, T, h, w) and targets
    (B, N, T, H, W): every pixel of the targets when they have at most ``num_points``, else random points, one set per
    clip; the predictions are read bilinearly at the points (never the targets squeezed onto the prediction's grid,
    which would blur their edges to the grid's cells)."""
    b, q, n = pred_masks.shape[0], pred_masks.shape[1], targets.shape[1]
    pred, tgt = pred_masks.flatten(1, 2), targets.flatten(1, 2).float()  # a map per (query or target, frame)
    if tgt.shape[-2] * tgt.shape[-1] <= num_points:
        return at_target_resolution(pred, tgt).reshape(b, q, -1), tgt.reshape(b, n, -1)
    coords = torch.rand(b, num_points, 2, device=pred_masks.device)
    return point_sample(pred, coords).view(b, q, -1), point_sample(tgt, coords).view(b, n, -1)


def box_costs(pred: torch.Tensor, target: torch.Tensor, present: torch.Tensor, kind: str) -> torch.Tensor:
    """pred (Q, T, 4), target (N, T, 4), present (N, T) -> (Q, N): the cost averaged over present frames."""
    fn = terms.box_l1_cost if kind == "box_l1" else terms.giou_cost
    per_frame = torch.stack([fn(pred[:, t], target[:, t]) for t in range(pred.shape[1])], -1)  # (Q, N, T)
    weight = present.float()[None]
    return (per_frame * weight).sum(-1) / weight.sum(-1).clamp(min=1)


class HungarianMatcher:
    def __init__(self, costs: dict[str, float], num_points: int = 12544, focal_alpha: float = 0.25):
        unknown = set(costs) - set(COSTS)
        if unknown:
            raise ValueError(f"unknown matching costs {sorted(unknown)} (known: {', '.join(COSTS)})")
        self.costs, self.num_points, self.focal_alpha = costs, num_points, focal_alpha

    @torch.no_grad()
    def __call__(self, scores: torch.Tensor, masks: torch.Tensor, targets: list[torch.Tensor],
                 boxes: torch.Tensor | None = None, target_boxes: list[torch.Tensor] | None = None,
                 labels: list[torch.Tensor] | None = None):
        """scores (B, Q) logits; masks (B, Q, T, h, w) logits; targets per clip (N_b, T, H, W); boxes (B, Q, T, 4)
        and target boxes per clip (N_b, T, 4) when box costs are used; labels per clip (N_b,) bool, whether the
        sentence refers to each target (default: all). Returns per clip (query indices, target indices), int64
        tensors of equal length. The costs of all clips are computed at once, each clip's targets padded to the
        most in a clip (a frame decoder matches every frame of the batch as a clip: one pass instead of one per
        frame), and each clip is assigned on its own columns."""
        counts = [t.shape[0] for t in targets]
        empty = torch.zeros(0, dtype=torch.int64)
        if not any(counts):
            return [(empty, empty)] * len(targets)
        padded = pad_sequence(targets, batch_first=True)  # (B, N, T, H, W), absent targets empty
        pred, tgt = mask_points(masks.float(), padded, self.num_points)
        cost = pred.new_zeros(len(targets), masks.shape[1], padded.shape[1])  # (B, Q, N)
        for name, weight in self.costs.items():
            if name == "score":
                p = scores.float().sigmoid()[:, :, None]
                if labels is None:
                    term = -p
                else:
                    referred = pad_sequence([x.to(p.device) for x in labels], batch_first=True)[:, None]
                    term = -torch.where(referred, p, 1 - p)
            elif name == "score_focal":
                term = terms.focal_score_cost(scores.float(), self.focal_alpha)[:, :, None]
            elif name == "mask":
                term = terms.sigmoid_ce_cost(pred, tgt)
            elif name == "mask_focal":
                term = terms.sigmoid_focal_cost(pred, tgt, self.focal_alpha)
            elif name == "dice":
                term = terms.dice_cost(pred, tgt)
            else:
                term = torch.zeros_like(cost)
                for b, target in enumerate(targets):
                    present = target.flatten(2).any(-1)
                    term[b, :, :counts[b]] = box_costs(boxes[b].float(), target_boxes[b].float(), present, name)
            cost = cost + weight * term
        cost = cost.cpu().numpy()
        out = []
        for b, n in enumerate(counts):
            if n == 0:
                out.append((empty, empty))
                continue
            rows, cols = linear_sum_assignment(cost[b, :, :n])
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out

"""Hungarian matching of predicted queries to target objects (Mask2Former's matcher, for clips).

The cost of assigning query q to object n is ``score_weight * -p_q + mask_weight * BCE + dice_weight * Dice``,
with BCE and Dice averaged over points sampled uniformly at random (one set of points for every query and
target, over every frame of the clip), so the cost stays bounded at any resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


def point_sample(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W), coords (N, P, 2) as (x, y) in [0, 1] -> (N, C, P), bilinear."""
    return F.grid_sample(x, 2.0 * coords[:, :, None] - 1.0, align_corners=False).squeeze(-1)


def _flat_points(masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """masks (N, T, H, W) at any resolution -> (N, T * P) values at the shared points."""
    if masks.shape[0] == 0:
        return masks.new_zeros(0, masks.shape[1] * coords.shape[1])
    return point_sample(masks, coords.expand(masks.shape[0], -1, -1)).flatten(1)


class HungarianMatcher:
    def __init__(self, score_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0,
                 num_points: int = 12544):
        self.score_weight, self.mask_weight, self.dice_weight = score_weight, mask_weight, dice_weight
        self.num_points = num_points

    @torch.no_grad()
    def __call__(self, scores: torch.Tensor, masks: torch.Tensor, targets: list[torch.Tensor]):
        """scores (B, Q) logits; masks (B, Q, T, h, w) logits; targets: per clip (N_b, T, H, W) float.
        Returns per clip (query indices, target indices), int64 tensors of equal length."""
        out = []
        for b, target in enumerate(targets):
            if target.shape[0] == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                out.append((empty, empty))
                continue
            pred_masks = masks[b].float()  # (Q, T, h, w)
            if pred_masks.shape[-2] * pred_masks.shape[-1] <= self.num_points:  # small masks: every pixel
                pred = pred_masks.flatten(1)
                tgt = F.interpolate(target.float(), size=pred_masks.shape[-2:], mode="bilinear",
                                    align_corners=False).flatten(1)
            else:
                coords = torch.rand(1, self.num_points, 2, device=masks.device)
                pred = _flat_points(pred_masks, coords)  # (Q, T*P) logits
                tgt = _flat_points(target.float(), coords)  # (N, T*P)
            points = pred.shape[1]
            pos = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction="none")
            neg = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction="none")
            cost_mask = (pos @ tgt.T + neg @ (1 - tgt).T) / points
            prob = pred.sigmoid()
            cost_dice = 1 - (2 * prob @ tgt.T + 1) / (prob.sum(-1)[:, None] + tgt.sum(-1)[None, :] + 1)
            cost_score = -scores[b].float().sigmoid()[:, None]
            cost = self.mask_weight * cost_mask + self.score_weight * cost_score + self.dice_weight * cost_dice
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out

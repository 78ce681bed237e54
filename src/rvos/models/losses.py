"""Losses of referring segmentation with query sets (Mask2Former / VITA style).

* Score: binary cross-entropy of each query's referring score; matched queries are positives, the others
  negatives weighted by ``no_object_weight`` (Mask2Former's ``eos_coef``); a weighted mean.
* Mask: binary cross-entropy and Dice of each matched (query, object) pair, on points chosen by Mask2Former's
  importance sampling (most uncertain points plus random ones), so memory stays bounded at high resolution
  (small masks use every pixel); summed over a clip's pairs and divided by its number of objects.
* Similarity (VITA): embeddings of queries matched to the same object, in different frames of a clip and at the
  clip level, are pulled together and those of different objects pushed apart (binary cross-entropy of their dot
  products, over pairs from the same clip).

Every loss is a mean over clips of a per-clip value, so a batch split over processes (DDP averages gradients)
or over gradient-accumulation steps gives exactly the loss of the whole batch in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rvos.models.matcher import HungarianMatcher, point_sample


@dataclass
class LossConfig:
    score_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    similarity_weight: float = 0.5
    no_object_weight: float = 0.1  # weight of the unmatched queries' score loss
    frame_weight: float = 1.0  # weight of the per-frame losses of the frame query decoder
    num_points: int = 12544  # points sampled per mask (Mask2Former: 112 * 112)
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75


def uncertain_point_coords(logits: torch.Tensor, num_points: int, oversample_ratio: float,
                           importance_sample_ratio: float) -> torch.Tensor:
    """logits (R, 1, h, w) -> coords (R, P, 2): the points whose logits are closest to 0 among
    ``oversample_ratio * P`` random ones, plus random points (PointRend's training sampling)."""
    r = logits.shape[0]
    sampled = int(num_points * oversample_ratio)
    coords = torch.rand(r, sampled, 2, device=logits.device)
    uncertainty = -point_sample(logits, coords).abs()[:, 0]  # (R, sampled)
    n_uncertain = int(importance_sample_ratio * num_points)
    idx = uncertainty.topk(n_uncertain, dim=1).indices
    chosen = coords.gather(1, idx[..., None].expand(-1, -1, 2))
    random = torch.rand(r, num_points - n_uncertain, 2, device=logits.device)
    return torch.cat([chosen, random], dim=1)


def dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-mask Dice loss (M,) of logits and labels (M, P)."""
    p = logits.sigmoid()
    return 1 - (2 * (p * labels).sum(-1) + 1) / (p.sum(-1) + labels.sum(-1) + 1)


def sigmoid_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-mask binary cross-entropy (M,), the mean over points."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)


def per_clip_mean(values: torch.Tensor, clips: torch.Tensor, num_clips: int) -> torch.Tensor:
    """Sum of ``values`` per clip, divided by the clip's count, averaged over all clips (empty clips add 0)."""
    sums = values.new_zeros(num_clips).index_add(0, clips, values)
    counts = values.new_zeros(num_clips).index_add(0, clips, torch.ones_like(values))
    return (sums / counts.clamp(min=1)).mean()


class SetCriterion:
    """Matches a set of predictions to the targets and returns the weighted score, mask and Dice losses."""

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg
        self.matcher = HungarianMatcher(cfg.score_weight, cfg.mask_weight, cfg.dice_weight, cfg.num_points)

    def __call__(self, scores: torch.Tensor, masks: torch.Tensor, targets: list[torch.Tensor]):
        """scores (B, Q); masks (B, Q, T, h, w) logits; targets per clip (N_b, T, H, W) bool.
        Returns (losses dict, matches)."""
        cfg = self.cfg
        num_clips = scores.shape[0]
        matches = self.matcher(scores, masks, targets)
        labels = torch.zeros_like(scores, dtype=torch.float32)
        weights = torch.full_like(labels, cfg.no_object_weight)
        for b, (q, _) in enumerate(matches):
            labels[b, q] = 1.0
            weights[b, q] = 1.0
        bce = F.binary_cross_entropy_with_logits(scores.float(), labels, reduction="none")
        losses = {"score": cfg.score_weight * ((bce * weights).sum(1) / weights.sum(1)).mean()}
        src = torch.cat([masks[b, q] for b, (q, _) in enumerate(matches)])  # (M, T, h, w)
        if src.shape[0] == 0:
            zero = masks.sum() * 0.0
            return losses | {"mask": zero, "dice": zero}, matches
        tgt = torch.cat([targets[b][n] for b, (_, n) in enumerate(matches)])  # (M, T, H, W)
        clips = torch.cat([torch.full((len(q),), b, dtype=torch.int64) for b, (q, _) in enumerate(matches)])
        clips = clips.to(src.device)
        m, t_len = src.shape[:2]
        src = src.flatten(0, 1)[:, None].float()  # every frame a mask: (M*T, 1, h, w)
        tgt = tgt.flatten(0, 1)[:, None].float()
        if src.shape[-2] * src.shape[-1] <= cfg.num_points:
            # small masks: every pixel (the points at the pixel centres), targets resampled to the mask grid
            point_logits = src.reshape(m, -1)
            point_labels = F.interpolate(tgt, size=src.shape[-2:], mode="bilinear", align_corners=False).reshape(m, -1)
        else:
            with torch.no_grad():
                coords = uncertain_point_coords(src, cfg.num_points, cfg.oversample_ratio,
                                                cfg.importance_sample_ratio)
                point_labels = point_sample(tgt, coords).view(m, -1)
            point_logits = point_sample(src, coords).view(m, -1)  # (M, T*P): a pair's points over its frames
        losses["mask"] = cfg.mask_weight * per_clip_mean(sigmoid_ce_loss(point_logits, point_labels), clips, num_clips)
        losses["dice"] = cfg.dice_weight * per_clip_mean(dice_loss(point_logits, point_labels), clips, num_clips)
        return losses, matches


def similarity_loss(embeds: torch.Tensor, ids: torch.Tensor, groups: torch.Tensor, num_clips: int) -> torch.Tensor:
    """embeds (N, C) of matched queries, ids (N,) of their objects, groups (N,) of their clips: BCE of the dot
    products against "same object", over pairs within a clip (VITA's ``loss_fg_sim``), averaged per clip."""
    if embeds.shape[0] == 0:
        return embeds.sum() * 0.0
    logits = embeds.float() @ embeds.float().T
    target = (ids[:, None] == ids[None, :]).float()
    same_clip = groups[:, None] == groups[None, :]
    pair_loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return per_clip_mean(pair_loss[same_clip], groups[:, None].expand_as(same_clip)[same_clip], num_clips)

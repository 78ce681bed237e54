"""The set criterion of referring segmentation with query sets (Mask2Former / VITA / ReferFormer style), with
pluggable terms: a method picks its terms and weights in :class:`LossConfig`, never copies the criterion.

* Score: binary cross-entropy of each query's referring score (``score_loss: bce``; queries matched to a referred
  object are positives, the others negatives, the unmatched ones weighted by ``no_object_weight``, Mask2Former's
  ``eos_coef``), or the focal loss
  (``score_loss: focal``, Deformable DETR / ReferFormer: summed over queries, divided by the matched count).
* Mask: binary cross-entropy (``mask_loss: bce``) or focal loss (``mask_loss: focal``) and Dice of each matched
  (query, object) pair, on points chosen by Mask2Former's importance sampling (most uncertain points plus random
  ones), so memory stays bounded at high resolution (a target of at most ``num_points`` pixels uses every pixel). The
  predictions are read bilinearly at the target's points: a target is never squeezed onto the prediction's coarser
  grid, whose cells would blur its edges (at stride 4 a 12-pixel square keeps 3 cells).
* Boxes (``box_weight``, ``giou_weight`` > 0, for methods that predict a box per frame): L1 and GIoU of each
  matched pair in the frames where the object is present; target boxes come from the masks.
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

from rvos.models.criterion import terms
from rvos.models.criterion.matcher import HungarianMatcher, at_target_resolution, point_sample
from rvos.models.criterion.terms import boxes_from_masks, dice_loss, sigmoid_ce_loss


@dataclass
class LossConfig:
    score_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    box_weight: float = 0.0  # L1 of per-frame boxes (0: the method predicts no boxes)
    giou_weight: float = 0.0  # 1 - GIoU of per-frame boxes
    score_loss: str = "bce"  # "bce" (Mask2Former) or "focal" (Deformable DETR / ReferFormer)
    mask_loss: str = "bce"  # "bce" or "focal"
    focal_alpha: float = 0.25
    similarity_weight: float = 0.5
    no_object_weight: float = 0.1  # weight of the unmatched queries' score loss (bce)
    frame_weight: float = 1.0  # weight of the per-frame losses of the frame query decoder
    centre_weight: float = 1.0  # the centre heatmap of a frame decoder with proposals (vlm's frame_decoder.proposals)
    # every annotated object of the clip is a target: the queries learn to segment every object, and the referring
    # score is positive only on the referred ones (an option for learning on a CPU; the papers supervise only the
    # referred objects)
    instance_targets: bool = False
    num_points: int = 12544  # points sampled per mask (Mask2Former: 112 * 112)
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75

    def __post_init__(self):
        for key in ("score_loss", "mask_loss"):
            if getattr(self, key) not in ("bce", "focal"):
                raise ValueError(f"loss.{key}: expected 'bce' or 'focal', got {getattr(self, key)!r}")

def uncertain_point_coords(logits: torch.Tensor, num_points: int, oversample_ratio: float,
                           importance_sample_ratio: float) -> torch.Tensor:
    """logits (R, 1, h, w) -> coords (R, P, 2): the points whose logits are closest to 0 among
    ``oversample_ratio * P`` random ones, plus random points (PointRend's training sampling)."""
    r = logits.shape[0]
    sampled = int(num_points * oversample_ratio)
    coords = torch.rand(r, sampled, 2, device=logits.device)
    uncertainty = -point_sample(logits, coords).abs()[:, 0]  # (R, sampled)
    n_uncertain = int(importance_sample_ratio * num_points)
    idx = uncertainty.topk(n_uncertain, dim=1, sorted=False).indices  # a set of points: their order is no matter
    chosen = coords.gather(1, idx[..., None].expand(-1, -1, 2))
    random = torch.rand(r, num_points - n_uncertain, 2, device=logits.device)
    return torch.cat([chosen, random], dim=1)


def matched_indices(matches: list[tuple[torch.Tensor, torch.Tensor]], num_queries: int):
    """A matcher's (query indices, target indices) per clip -> the matched queries' indices among all clips' queries
    flattened (clip-major, B * Q), and their clips, (M,) each, in the order of the matches."""
    queries = torch.cat([b * num_queries + q for b, (q, _) in enumerate(matches)])
    return queries, queries // num_queries


def per_clip_mean(values: torch.Tensor, clips: torch.Tensor, num_clips: int) -> torch.Tensor:
    """Sum of ``values`` per clip, divided by the clip's count, averaged over all clips (empty clips add 0)."""
    sums = values.new_zeros(num_clips).index_add(0, clips, values)
    counts = values.new_zeros(num_clips).index_add(0, clips, torch.ones_like(values))
    return (sums / counts.clamp(min=1)).mean()


class SetCriterion:
    """Matches a set of predictions to the targets and returns the weighted loss terms of :class:`LossConfig`."""

    def __init__(self, cfg: LossConfig):
        self.cfg = cfg
        costs = {"score_focal" if cfg.score_loss == "focal" else "score": cfg.score_weight,
                 "mask_focal" if cfg.mask_loss == "focal" else "mask": cfg.mask_weight, "dice": cfg.dice_weight,
                 "box_l1": cfg.box_weight, "giou": cfg.giou_weight}
        self.matcher = HungarianMatcher({k: w for k, w in costs.items() if w}, cfg.num_points, cfg.focal_alpha)

    def __call__(self, scores: torch.Tensor, masks: torch.Tensor, targets: list[torch.Tensor],
                 boxes: torch.Tensor | None = None, labels: list[torch.Tensor] | None = None,
                 target_boxes: list[torch.Tensor] | None = None):
        """scores (B, Q); masks (B, Q, T, h, w) logits; targets per clip (N_b, T, H, W) bool; boxes (B, Q, T, 4)
        (cx, cy, w, h) in [0, 1] when the config weighs box terms; labels per clip (N_b,) bool: whether the
        sentence refers to each target (default: every target is referred; an unreferred target is an instance
        whose mask is learnt and whose score is a negative); target boxes per clip (N_b, T, 4), from the masks when
        not given (a caller that scores several predictions against the same targets computes them once). Returns
        (losses dict, matches)."""
        cfg = self.cfg
        num_clips = scores.shape[0]
        use_boxes = bool(cfg.box_weight or cfg.giou_weight)
        if use_boxes and target_boxes is None:
            target_boxes = [boxes_from_masks(t) for t in targets]
        matches = self.matcher(scores, masks, targets, boxes, target_boxes, labels)
        losses = {"score": cfg.score_weight * self._score_loss(scores, matches, labels)}
        queries, clips = matched_indices(matches, masks.shape[1])
        # one gather for every clip: the backward of each indexing is a zero-filled gradient of the whole of masks
        src = masks.flatten(0, 1)[queries.to(masks.device)]  # (M, T, h, w)
        if src.shape[0] == 0:
            zero = masks.sum() * 0.0
            losses |= {"mask": zero, "dice": zero}
            if use_boxes:
                losses |= {"box": boxes.sum() * 0.0, "giou": boxes.sum() * 0.0}
            return losses, matches
        tgt = torch.cat([targets[b][n] for b, (_, n) in enumerate(matches)])  # (M, T, H, W)
        clips = clips.to(src.device)
        m, t_len = src.shape[:2]
        src = src.flatten(0, 1)[:, None].float()  # every frame a mask: (M*T, 1, h, w)
        tgt_frames = tgt.flatten(0, 1)[:, None].float()
        if tgt_frames.shape[-2] * tgt_frames.shape[-1] <= cfg.num_points:  # every pixel of the target
            point_logits = at_target_resolution(src, tgt_frames).reshape(m, -1)
            point_labels = tgt_frames.reshape(m, -1)
        else:
            with torch.no_grad():
                coords = uncertain_point_coords(src, cfg.num_points, cfg.oversample_ratio,
                                                cfg.importance_sample_ratio)
                point_labels = point_sample(tgt_frames, coords).view(m, -1)
            point_logits = point_sample(src, coords).view(m, -1)  # (M, T*P): a pair's points over its frames
        if cfg.mask_loss == "focal":
            mask = terms.sigmoid_focal(point_logits, point_labels, cfg.focal_alpha).mean(1)
        else:
            mask = sigmoid_ce_loss(point_logits, point_labels)
        losses["mask"] = cfg.mask_weight * per_clip_mean(mask, clips, num_clips)
        losses["dice"] = cfg.dice_weight * per_clip_mean(dice_loss(point_logits, point_labels), clips, num_clips)
        if use_boxes:
            pred = boxes.flatten(0, 1)[queries.to(boxes.device)].float()  # (M, T, 4)
            true = torch.cat([target_boxes[b][n] for b, (_, n) in enumerate(matches)])
            present = tgt.flatten(2).any(-1).float()  # (M, T): boxes count where the object is present
            frames = present.sum(1).clamp(min=1)
            l1 = ((pred - true).abs().sum(-1) * present).sum(1) / frames
            giou = (terms.giou_loss(pred.flatten(0, 1), true.flatten(0, 1)).view(m, t_len) * present).sum(1) / frames
            losses["box"] = cfg.box_weight * per_clip_mean(l1, clips, num_clips)
            losses["giou"] = cfg.giou_weight * per_clip_mean(giou, clips, num_clips)
        return losses, matches

    def _score_loss(self, scores: torch.Tensor, matches, target_labels) -> torch.Tensor:
        cfg = self.cfg
        queries, _ = matched_indices(matches, scores.shape[1])
        queries = queries.to(scores.device)
        labels = torch.zeros(scores.shape, device=scores.device)  # contiguous: set through a flat view
        matched = torch.zeros_like(labels)
        matched.view(-1)[queries] = 1.0
        if target_labels is None:
            labels.view(-1)[queries] = 1.0
        else:
            labels.view(-1)[queries] = torch.cat([target_labels[b][n.to(target_labels[b].device)].to(scores.device)
                                                  for b, (_, n) in enumerate(matches)]).float()
        if cfg.score_loss == "focal":
            focal = terms.sigmoid_focal(scores.float(), labels, cfg.focal_alpha).sum(1)
            return (focal / labels.sum(1).clamp(min=1)).mean()
        weights = torch.where(matched > 0, 1.0, cfg.no_object_weight)
        bce = F.binary_cross_entropy_with_logits(scores.float(), labels, reduction="none")
        return ((bce * weights).sum(1) / weights.sum(1)).mean()


def per_frame_targets(targets: list[torch.Tensor], labels: list[torch.Tensor] | None):
    """Clip targets (N_b, T, H, W) per clip, with their referring flags (or None) -> per frame of every clip (clip
    major) the targets visible in it as a clip of one frame (N_f, 1, H, W), their indices among the clip's
    targets, and their flags (None without flags): the frame-level matching of Mask2Former-style decoders."""
    frame_targets, frame_ids, frame_labels = [], [], None if labels is None else []
    for b, target in enumerate(targets):
        for t in range(target.shape[1]):
            visible = target[:, t].flatten(1).any(1).nonzero().squeeze(1)
            frame_targets.append(target[visible, t : t + 1])
            frame_ids.append(visible)
            if frame_labels is not None:
                frame_labels.append(labels[b][visible])
    return frame_targets, frame_ids, frame_labels


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

"""The per-pair loss functions the matchers and criteria are built from: one formula each.

Masks are compared on points (logits and labels (M, P)); boxes are (cx, cy, w, h) normalised to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou, masks_to_boxes


def dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-mask Dice loss (M,) of logits and labels (M, P): ``1 - (2 |p.y| + 1) / (|p| + |y| + 1)``."""
    p = logits.sigmoid()
    return 1 - (2 * (p * labels).sum(-1) + 1) / (p.sum(-1) + labels.sum(-1) + 1)


def dice_cost(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice loss of every (prediction, target) pair: logits (..., Q, P), labels (..., N, P) -> (..., Q, N)."""
    p = logits.sigmoid()
    return 1 - (2 * p @ labels.mT + 1) / (p.sum(-1)[..., :, None] + labels.sum(-1)[..., None, :] + 1)


def sigmoid_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-mask binary cross-entropy (M,), the mean over points."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)


def sigmoid_ce_cost(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of every pair: (..., Q, P), (..., N, P) -> (..., Q, N)."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ labels.mT + neg @ (1 - labels).mT) / logits.shape[-1]


def sigmoid_focal(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss (RetinaNet), ``alpha`` < 0 for no class balancing."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    p_t = p * labels + (1 - p) * (1 - labels)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * labels + (1 - alpha) * (1 - labels)) * loss
    return loss


def sigmoid_focal_cost(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss of every pair: (..., Q, P), (..., N, P) -> (..., Q, N)."""
    pos = sigmoid_focal(logits, torch.ones_like(logits), alpha, gamma)
    neg = sigmoid_focal(logits, torch.zeros_like(logits), alpha, gamma)
    return (pos @ labels.mT + neg @ (1 - labels).mT) / logits.shape[-1]


def focal_score_cost(logits: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Deformable DETR's classification cost of a query as the positive class, elementwise: (..., Q) -> (..., Q)."""
    p = logits.sigmoid()
    neg = (1 - alpha) * p**gamma * -(1 - p + 1e-8).log()
    pos = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
    return pos - neg


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """masks (..., H, W) bool -> boxes (..., 4) (cx, cy, w, h) normalised by the mask size; empty masks: zeros."""
    h, w = masks.shape[-2:]
    flat = masks.reshape(-1, h, w)
    boxes = torch.zeros(flat.shape[0], 4, device=masks.device)
    present = flat.flatten(1).any(1)
    if present.any():
        xyxy = masks_to_boxes(flat[present]).float()
        xyxy[:, 2:] += 1  # pixel-inclusive corners -> the box's far edges
        boxes[present] = box_convert(xyxy, "xyxy", "cxcywh") / torch.tensor([w, h, w, h], device=masks.device)
    return boxes.reshape(*masks.shape[:-2], 4)


def box_l1_cost(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred (Q, 4), target (N, 4) -> (Q, N) L1 distances."""
    return torch.cdist(pred, target, p=1)


def giou_cost(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred (Q, 4), target (N, 4) cxcywh -> (Q, N) ``1 - GIoU``."""
    return 1 - generalized_box_iou(box_convert(pred, "cxcywh", "xyxy"), box_convert(target, "cxcywh", "xyxy"))


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Paired boxes (M, 4) cxcywh -> (M,) ``1 - GIoU``."""
    return giou_cost(pred, target).diagonal() if pred.shape[0] else pred.sum(-1)

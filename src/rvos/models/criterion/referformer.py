"""The matcher and criterion of ReferFormer-style methods (ReferFormer, SgMg, MUTR): one target per clip, the
referred object, followed by the query that best fits it over the whole clip.

Per clip the target is a mask per frame (the union of the referred objects, empty where none is visible), its box
per frame, and which frames show it (``valid``). Per decoder layer:

* matching: the query minimising ``class * focal score cost (mean over valid frames) + box * L1 + giou * (-GIoU)
  (means over all frames) + mask * mean focal + dice * (-Dice coefficient)`` (masks over all frames, at the
  resolution of the masks matched on);
* losses, each summed over the batch and divided by the number of valid frames in it (averaged over processes):
  the focal loss of every frame's every query score (positive: the matched query in valid frames), L1 and
  ``1 - GIoU`` of the matched query's boxes in every frame (an absent object's box is all zeros), and the focal
  (mean over pixels) and Dice losses of the matched query's masks (at full resolution for SgMg, at stride 4 for
  ReferFormer and MUTR, the targets subsampled) and, where the method has them, of its coarse masks (SgMg's
  stride-2 prior).

With ``instance_targets`` (a CPU-size option, off in the paper configs) every annotated object visible in the clip
is a target of its own: the clip's targets are matched to distinct queries by the same costs (Hungarian), each
matched query's boxes and masks are supervised, and the class is positive for the queries of the referred objects
(:func:`instance_targets`). The queries then learn to segment every object rather than all the same one, so that a
referring score can choose among them (conv-CLIP's and DsHmp's oracle query rose from about 0.4 to 0.7 with it on the
synthetic benchmark).

Target boxes are as the official loaders make them: the first and last row and column of the mask (pixel indices,
so a one-pixel object has no width), as (cx, cy, w, h) over the image's width and height.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou

from rvos.errors import ConfigError
from rvos.models.criterion.terms import dice_cost, focal_score_cost, sigmoid_focal, sigmoid_focal_cost


@dataclass
class ReferLossConfig:
    class_weight: float = 2.0
    box_weight: float = 5.0
    giou_weight: float = 2.0
    mask_weight: float = 2.0  # focal loss of the masks
    dice_weight: float = 5.0
    low_mask_weight: float = 2.0  # the same two on the coarse masks (SgMg's stride-2 prior; 0: none)
    low_dice_weight: float = 5.0
    focal_alpha: float = 0.25
    # matching costs (the official ``set_cost_*``)
    cost_class: float = 2.0
    cost_box: float = 5.0
    cost_giou: float = 2.0
    cost_mask: float = 2.0
    cost_dice: float = 5.0
    # every annotated object visible in the clip a target, matched to a query of its own (see the module's text; the
    # queries must be at least the clips' objects)
    instance_targets: bool = False
    # the centre heatmap of SgMg's model.proposals (CenterNet's focal loss; a CPU-size option)
    centre_weight: float = 1.0


@dataclass
class ClipTargets:
    """The batch's targets: one per clip (the referred objects' union), or with ``instance_targets`` one per object
    visible in a clip, in clip order."""

    masks: torch.Tensor  # (P, T, H, W) float: a target's mask per frame
    boxes: torch.Tensor  # (P, T, 4) cxcywh in [0, 1]; zeros where absent
    valid: torch.Tensor  # (P, T) bool: the frame shows the target
    clips: torch.Tensor  # (P,) long: the clip of each target
    referred: torch.Tensor  # (P,) bool: whether the clip's sentence refers to it (the class's positives)

    def at_stride(self, stride: int) -> torch.Tensor:
        """The masks at ``stride`` of the padded input, every ``stride``-th pixel from the ``stride // 2``-th, as
        the official losses subsample them (for masks predicted at that stride)."""
        start = stride // 2
        return self.masks[..., start::stride, start::stride]

    @property
    def low(self) -> torch.Tensor:
        """The masks at stride 2 (SgMg's coarse masks)."""
        return self.at_stride(2)


def inclusive_boxes(masks: torch.Tensor) -> torch.Tensor:
    """masks (..., H, W) bool -> (..., 4) cxcywh normalised by (W, H), from the first / last row and column that
    hold the mask (the official ``bounding_box``); zeros for an empty mask."""
    h, w = masks.shape[-2:]
    flat = masks.reshape(-1, h, w)
    rows, cols = flat.any(2), flat.any(1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ar_h, h).min(1).values
    y2 = torch.where(rows, ar_h, -1).max(1).values
    x1 = torch.where(cols, ar_w, w).min(1).values
    x2 = torch.where(cols, ar_w, -1).max(1).values
    xyxy = torch.stack([x1, y1, x2, y2], 1).float()
    present = rows.any(1)
    xyxy[~present] = 0
    boxes = box_convert(xyxy, "xyxy", "cxcywh") / torch.tensor([w, h, w, h], device=masks.device)
    return boxes.reshape(*masks.shape[:-2], 4)


def pad_to(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """masks (..., H, W) -> padded at the bottom / right to ``size``, as the models pad their frames."""
    h, w = masks.shape[-2:]
    return F.pad(masks, (0, size[1] - w, 0, size[0] - h))


def _targets(objects: torch.Tensor, size: tuple[int, int], clips: torch.Tensor, referred: torch.Tensor) -> ClipTargets:
    """objects (P, T, H, W) bool -> their targets, padded at the bottom / right to ``size`` (boxes relative to the
    unpadded H, W)."""
    return ClipTargets(pad_to(objects, size).float(), inclusive_boxes(objects), objects.flatten(2).any(-1),
                       clips.to(objects.device), referred.to(objects.device))


def clip_targets(targets: list[torch.Tensor], size: tuple[int, int]) -> ClipTargets:
    """The referred objects' masks per clip (N_b, T, H, W) bool -> the clip's target: their union per frame (padded
    at the bottom / right to ``size``), its boxes (relative to the unpadded H, W) and valid frames."""
    unions = torch.stack([t.any(0) if t.shape[0] else t.new_zeros(t.shape[1:]) for t in targets])
    return _targets(unions, size, torch.arange(len(targets)), torch.ones(len(targets), dtype=torch.bool))


def instance_targets(instances: list[torch.Tensor], referred: list[torch.Tensor], size: tuple[int, int]) -> ClipTargets:
    """Every annotated object per clip (M_b, T, H, W) bool and whether the clip's sentence refers to each (M_b,) ->
    one target per object that some frame of its clip shows (an object no frame shows has nothing to segment)."""
    shown = [inst.flatten(1).any(1) for inst in instances]
    objects = torch.cat([inst[s] for inst, s in zip(instances, shown)])
    clips = torch.cat([torch.full((int(s.sum()),), b, dtype=torch.long) for b, s in enumerate(shown)])
    flags = torch.cat([r.to(s.device)[s] for r, s in zip(referred, shown)])
    return _targets(objects, size, clips, flags)


def referring_targets(batch, size: tuple[int, int], instances: bool) -> ClipTargets:
    """A :class:`~rvos.models.meta.base.ClipBatch`'s targets at the padded ``size``: every annotated object
    (``instances``) or the referred objects' union per clip."""
    if instances:
        return instance_targets(batch.instances, batch.referred, size)
    return clip_targets(batch.targets, size)


def _giou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred (M, 4), target (N, 4) cxcywh -> (M, N) GIoU."""
    return generalized_box_iou(box_convert(pred, "cxcywh", "xyxy"), box_convert(target, "cxcywh", "xyxy"))


@torch.no_grad()
def match(logits: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor, targets: ClipTargets, target_masks,
          cfg: ReferLossConfig) -> torch.Tensor:
    """logits (B, T, Q), boxes (B, T, Q, 4), masks (B, T, Q, h, w) logits and the target masks at that
    resolution (P, T, h, w) -> the query matched to each target (P,): the one of least cost for a clip's single
    target, distinct queries of least total cost (Hungarian) for a clip's several."""
    out = torch.zeros(len(targets.clips), dtype=torch.long, device=logits.device)
    queries = logits.shape[-1]
    for b in range(logits.shape[0]):
        index = (targets.clips == b).nonzero()[:, 0]
        if not len(index):
            continue
        if len(index) > queries:
            raise ConfigError(f"a training clip shows {len(index)} annotated objects, but the model has {queries} "
                              "queries to match them to: set model.queries to at least the most objects a clip shows")
        valid = targets.valid[index].float()  # (n, T)
        frames = valid.sum(1, keepdim=True).clamp(min=1)
        cost_class = valid @ focal_score_cost(logits[b].float(), cfg.focal_alpha) / frames  # mean over valid frames
        tgt_box = targets.boxes[index]  # (n, T, 4)
        cost_box = (boxes[b].float()[None] - tgt_box[:, :, None]).abs().sum(-1).mean(1)  # (n, Q)
        cost_giou = -torch.stack([_giou(boxes[b, t].float(), tgt_box[:, t]).T for t in range(boxes.shape[1])]).mean(0)
        pred = masks[b].float().transpose(0, 1).flatten(1)  # (Q, T*h*w)
        tgt = target_masks[index].flatten(1)
        cost_mask = sigmoid_focal_cost(pred, tgt, cfg.focal_alpha).T
        cost_dice = dice_cost(pred, tgt).T
        cost = (cfg.cost_class * cost_class + cfg.cost_box * cost_box + cfg.cost_giou * cost_giou
                + cfg.cost_mask * cost_mask + cfg.cost_dice * cost_dice)  # (n, Q)
        if len(index) == 1:
            out[index] = cost[0].argmin()
        else:
            out[index] = torch.as_tensor(linear_sum_assignment(cost.cpu().numpy())[1], device=out.device)
    return out


def num_valid_frames(valid: torch.Tensor) -> float:
    """The valid frames of the batch, averaged over processes (at least 1): every loss's divisor."""
    count = valid.sum().float().reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return max(count.item(), 1.0)


def _mask_losses(pred: torch.Tensor, target: torch.Tensor, alpha: float, norm: float):
    """pred, target (P, T, h, w) -> (focal, dice), each summed over targets / norm."""
    pred, target = pred.flatten(1).float(), target.flatten(1)
    focal = sigmoid_focal(pred, target, alpha).mean(1).sum() / norm
    p = pred.sigmoid()
    dice = (1 - (2 * (p * target).sum(1) + 1) / (p.sum(1) + target.sum(1) + 1)).sum() / norm
    return focal, dice


def layer_losses(logits: torch.Tensor, boxes: torch.Tensor, matched: torch.Tensor, masks: torch.Tensor,
                 low_masks: torch.Tensor | None, targets: ClipTargets, cfg: ReferLossConfig, norm: float,
                 mask_stride: int = 1) -> dict:
    """One decoder layer's weighted losses: logits (B, T, Q), boxes (B, T, Q, 4), the query matched to each target
    (P,), its masks (P, T, H/s, W/s) at ``mask_stride`` s of the padded input (SgMg: 1, ReferFormer and MUTR: 4) and
    its stride-2 coarse masks (P, T, H/2, W/2) or None."""
    labels = torch.zeros_like(logits, dtype=torch.float32)
    positive = targets.referred
    labels[targets.clips[positive], :, matched[positive]] = targets.valid[positive].float()
    losses = {"class": cfg.class_weight * sigmoid_focal(logits.float(), labels, cfg.focal_alpha).sum() / norm}
    pred_boxes = boxes[targets.clips, :, matched].flatten(0, 1).float()  # (P*T, 4)
    true_boxes = targets.boxes.flatten(0, 1)
    losses["box"] = cfg.box_weight * (pred_boxes - true_boxes).abs().sum() / norm
    losses["giou"] = cfg.giou_weight * (1 - torch.diag(_giou(pred_boxes, true_boxes))).sum() / norm
    focal, dice = _mask_losses(masks, targets.at_stride(mask_stride), cfg.focal_alpha, norm)
    losses["mask"], losses["dice"] = cfg.mask_weight * focal, cfg.dice_weight * dice
    if low_masks is not None and (cfg.low_mask_weight or cfg.low_dice_weight):
        focal, dice = _mask_losses(low_masks, targets.low, cfg.focal_alpha, norm)
        losses["mask_low"], losses["dice_low"] = cfg.low_mask_weight * focal, cfg.low_dice_weight * dice
    return losses

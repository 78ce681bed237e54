"""Region similarity J and boundary measure F, exactly as the DAVIS 2017 evaluation defines them (the definitions
the MeViS, Ref-YouTube-VOS and Ref-DAVIS evaluations use), computed fast.

* J = |G ∩ P| / |G ∪ P|, and 1 when both masks are empty.
* F: boundary maps as DAVIS's ``_seg2bmap`` (a pixel is on the boundary when it differs from its east, south or
  south-east neighbour inside the image; the last row compares only east, the last column only south, the corner
  never), each dilated by a disk of radius ``ceil(0.008 * image diagonal)`` (the pixels with dx² + dy² <= r², as
  ``skimage.morphology.disk``); precision = predicted boundary pixels near the true boundary / predicted boundary
  pixels, recall the converse; both boundaries empty gives P = R = 1, exactly one empty gives F = 0.

Speed comes from one exact shortcut: both measures are computed inside the box that holds both masks (grown by
one pixel up and left, where ``_seg2bmap`` puts boundary pixels, and by one down and right, so that the
neighbour rules inside the box are those of the full frame). Nothing outside it is foreground, on a boundary,
or near one, so the counts are the full frame's.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from rvos.data.masks import DenseMask

BOUND_TH = 0.008


def bound_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    return int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(height, width)))


def disk(radius: int) -> np.ndarray:
    """The structuring element of ``skimage.morphology.disk(radius)``: offsets with dx² + dy² <= radius²."""
    r = np.arange(-radius, radius + 1)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).astype(np.uint8)


_BLOCK = np.ones((2, 2), np.uint8)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map (H, W) bool of a binary mask, as DAVIS's ``_seg2bmap``.

    A pixel is on the boundary when its 2x2 block (itself and its east, south and south-east neighbours) is not
    uniform. Grey dilation and erosion with that block, anchored at the pixel, give the block's max and min, and
    they ignore neighbours outside the image, which is exactly DAVIS's rule for the last row (east only), the last
    column (south only) and the corner (never).
    """
    seg = np.ascontiguousarray(seg, dtype=bool).view(np.uint8)
    return cv2.dilate(seg, _BLOCK, anchor=(0, 0)) != cv2.erode(seg, _BLOCK, anchor=(0, 0))


def _f_from_counts(n_fg: int, n_gt: int, fg_match: int, gt_match: int) -> float:
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    precision = fg_match / float(n_fg)
    recall = gt_match / float(n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def union_region(boxes: list, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The region (y0, y1, x0, x1), exclusive ends, that holds every boundary pixel and every foreground pixel
    of masks with these inclusive boxes (None for empty masks), or None when all are empty.

    ``_seg2bmap`` puts boundary pixels up to one pixel above / left of the foreground, so the region grows by one
    there; it also grows by one below / right, so that inside it every pixel has the same in-image neighbours as
    in the full frame (or the region's last row / column is the frame's)."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return (max(min(b[0] for b in boxes) - 1, 0), min(max(b[1] for b in boxes) + 2, height),
            max(min(b[2] for b in boxes) - 1, 0), min(max(b[3] for b in boxes) + 2, width))


def region_scores(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray) -> tuple[float, float]:
    """(J, F) from the crops of a frame's masks to :func:`union_region`; ``kernel`` is the full frame's disk."""
    inter = np.count_nonzero(gt & pred)
    j = inter / np.count_nonzero(gt | pred)
    gb, pb = seg2bmap(gt), seg2bmap(pred)
    n_gt, n_fg = int(np.count_nonzero(gb)), int(np.count_nonzero(pb))
    if n_gt == 0 or n_fg == 0:
        return j, _f_from_counts(n_fg, n_gt, 0, 0)
    fg_match = int(np.count_nonzero(pb & cv2.dilate(gb.view(np.uint8), kernel).view(bool)))
    gt_match = int(np.count_nonzero(gb & cv2.dilate(pb.view(np.uint8), kernel).view(bool)))
    return j, _f_from_counts(n_fg, n_gt, fg_match, gt_match)


def frame_scores(gt, pred, kernel: np.ndarray | None = None) -> tuple[float, float]:
    """(J, F) of one frame. ``gt`` and ``pred`` are bool arrays (H, W) or masks with ``box`` and ``crop(region)``
    (:mod:`rvos.data.masks`); ``kernel`` = ``disk(bound_radius(H, W))``, passed in to save rebuilding it."""
    gt = gt if hasattr(gt, "crop") else DenseMask(gt)
    pred = pred if hasattr(pred, "crop") else DenseMask(pred)
    height, width = pred.array.shape if isinstance(pred, DenseMask) else gt.size
    region = union_region([gt.box, pred.box], height, width)
    if region is None:  # both empty
        return 1.0, 1.0
    if kernel is None:
        kernel = disk(bound_radius(height, width))
    return region_scores(gt.crop(region), pred.crop(region), kernel)


def jaccard_and_f(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (J, F) of bool stacks (T, H, W)."""
    kernel = disk(bound_radius(*gt.shape[-2:]))
    scores = np.array([frame_scores(g, p, kernel) for g, p in zip(gt, pred)]).reshape(-1, 2)
    return scores[:, 0], scores[:, 1]

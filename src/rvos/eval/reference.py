"""A straightforward per-frame implementation of the DAVIS J and F definitions, step by step as the official
DAVIS 2017 code computes them (``davis2017/metrics.py``: one frame at a time, void pixels, full-frame boundary
maps and dilations), written from its description.

It is the yardstick for :mod:`rvos.eval.metrics`: the tests check the fast metrics against it on edge cases and
random masks, and ``benchmarks/eval_speed.py`` times both in the same run.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def db_eval_iou(annotation: np.ndarray, segmentation: np.ndarray, void_pixels: np.ndarray | None = None) -> float:
    annotation = annotation.astype(bool)
    segmentation = segmentation.astype(bool)
    void = np.zeros_like(segmentation) if void_pixels is None else void_pixels.astype(bool)
    inters = np.sum((segmentation & annotation) & np.logical_not(void))
    union = np.sum((segmentation | annotation) & np.logical_not(void))
    return 1.0 if np.isclose(union, 0) else float(inters / union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """DAVIS's ``_seg2bmap`` on a full frame, by whole-array shifts."""
    seg = seg.astype(bool)
    seg[seg > 0] = 1
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def disk(radius: float) -> np.ndarray:
    """``skimage.morphology.disk``."""
    r = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(r, r)
    return ((x**2 + y**2) <= radius**2).astype(np.uint8)


def f_measure(foreground_mask: np.ndarray, gt_mask: np.ndarray, void_pixels: np.ndarray | None = None,
              bound_th: float = 0.008) -> float:
    void = np.zeros_like(foreground_mask, dtype=bool) if void_pixels is None else void_pixels.astype(bool)
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(foreground_mask.shape))
    fg_boundary = seg2bmap(foreground_mask * np.logical_not(void))
    gt_boundary = seg2bmap(gt_mask * np.logical_not(void))
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), disk(bound_pix))
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), disk(bound_pix))
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg = np.sum(fg_boundary)
    n_gt = np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_match) / float(n_fg)
        recall = np.sum(gt_match) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def score_expression(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(mean J, mean F) over the frames of one expression, one frame at a time."""
    js = [db_eval_iou(g, p) for g, p in zip(gt, pred)]
    fs = [f_measure(p, g) for g, p in zip(gt, pred)]
    return float(np.mean(js)), float(np.mean(fs))

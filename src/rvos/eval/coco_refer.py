"""A2D-Sentences and JHMDB-Sentences metrics from a COCO-format ground truth and COCO-format predictions, exactly
as MTTR's and ReferFormer's evaluation compute them.

The ground truth is the COCO file those repositories write: one image per (annotated frame, sentence), holding
exactly one annotation (the referred object's RLE mask); predictions are a list of ``{"image_id", "segmentation"
(RLE), "score"}``, any number per image (a ``category_id`` may be given; categories are ignored).

* ``mAP 0.5:0.95``, ``AP 0.5``, ``AP 0.75``, ``AP 0.5:0.95 S / M / L``: pycocotools' ``COCOeval`` on masks with
  categories ignored (``useCats = 0``), its first six statistics. Which predictions enter it is a choice: both
  official evaluation loops (MTTR's ``trainer.py``, ReferFormer's ``engine.py``) submit every query's mask with its
  score (``predictions="all"``, the default); ``"best"`` keeps the top-scoring one per image.
* ``P@0.5`` ... ``P@0.9``, ``overall_iou``, ``mean_iou``: the top-scoring prediction of each image against its
  annotation; IoU = (intersection + 1e-6) / (union + 1e-6); P@k counts IoUs strictly above k; overall IoU is the
  summed intersections over the summed unions (IoUs in float32, as the official torch code).

An image without any prediction is an error (the official code fails on it too), as is a prediction for an image
the ground truth does not have: nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np

from rvos.errors import DataError

AP_KEYS = ("mAP 0.5:0.95", "AP 0.5", "AP 0.75", "AP 0.5:0.95 S", "AP 0.5:0.95 M", "AP 0.5:0.95 L")
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())  # pycocotools prints progress on every call


def _load_predictions(pred: str | os.PathLike | list) -> list[dict]:
    if isinstance(pred, list):
        return pred
    try:
        data = json.loads(Path(pred).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{pred}: cannot read COCO-format predictions ({exc})") from None
    if not isinstance(data, list):
        raise DataError(f"{pred}: expected a list of {{image_id, segmentation, score}} predictions")
    for i, p in enumerate(data):
        if not isinstance(p, dict) or not {"image_id", "segmentation", "score"} <= set(p):
            raise DataError(f"{pred}: prediction {i} lacks image_id, segmentation or score")
    return data


def _mask_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """IoU in float32, as the official code computes it with torch (the mean IoU differs at 1e-8 otherwise)."""
    inter = np.float32(np.logical_and(pred, gt).sum())
    union = np.float32(np.logical_or(pred, gt).sum())
    eps = np.float32(1e-6)
    return float((inter + eps) / (union + eps)), float(inter), float(union)


def evaluate_coco_refer(gt: str | os.PathLike, pred: str | os.PathLike | list, predictions: str = "all") -> dict:
    """The metrics of the module docstring, keyed as MTTR prints them, plus ``num_images`` and ``predictions``."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if predictions not in ("all", "best"):
        raise ValueError(f"predictions must be 'all' or 'best', got {predictions!r}")
    with _quiet():
        try:
            coco_gt = COCO(str(gt))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{gt}: not a COCO-format ground truth ({exc})") from None
    preds = _load_predictions(pred)
    by_image: dict[int, list[dict]] = {}
    for p in preds:
        by_image.setdefault(p["image_id"], []).append(p)
    unknown = sorted(set(by_image) - set(coco_gt.imgs))
    if unknown:
        raise DataError(f"{len(unknown)} predicted image ids are not in the ground truth, e.g. {unknown[:5]}: "
                        "are the predictions for this split?")
    missing = sorted(set(coco_gt.imgs) - set(by_image))
    if missing:
        raise DataError(f"{len(missing)} of {len(coco_gt.imgs)} ground-truth images have no prediction, "
                        f"e.g. {missing[:5]}: every image needs at least one")
    not_one = [i for i in coco_gt.imgs if len(coco_gt.imgToAnns[i]) != 1]
    if not_one:
        raise DataError(f"{len(not_one)} ground-truth images do not hold exactly one annotation, e.g. {not_one[:5]}: "
                        "a referring ground truth has one referred object per (frame, sentence)")
    best = {}  # the top score; among equal scores the last, as the official ``sorted(...)[-1]`` picks
    for image_id, ps in by_image.items():
        for p in ps:
            if image_id not in best or p["score"] >= best[image_id]["score"]:
                best[image_id] = p
    entered = [best[i] for i in sorted(best)] if predictions == "best" else preds

    with _quiet():
        coco_pred = coco_gt.loadRes([{"category_id": 1, **p} for p in entered])  # categories are ignored
        coco_eval = COCOeval(coco_gt, coco_pred, iouType="segm")
        coco_eval.params.useCats = 0  # categories are not predicted in referring segmentation
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    scores = {k: float(v) for k, v in zip(AP_KEYS, coco_eval.stats[:6])}

    counts = dict.fromkeys(THRESHOLDS, 0)
    total_inter = total_union = 0.0
    ious = []
    for image_id in coco_gt.imgs:
        gt_mask = mask_utils.decode(coco_gt.imgToAnns[image_id][0]["segmentation"])
        segmentation = best[image_id]["segmentation"]
        if isinstance(segmentation.get("counts"), str):
            segmentation = dict(segmentation, counts=segmentation["counts"].encode())
        iou, inter, union = _mask_iou(mask_utils.decode(segmentation).astype(bool), gt_mask.astype(bool))
        for k in THRESHOLDS:
            counts[k] += iou > k
        total_inter += inter
        total_union += union
        ious.append(iou)
    scores |= {f"P@{k}": counts[k] / len(ious) for k in THRESHOLDS}
    scores |= {"overall_iou": total_inter / total_union if total_union else 0.0, "mean_iou": float(np.mean(ious))}
    return scores | {"num_images": len(ious), "predictions": predictions}


def is_coco_refer(gt: str | os.PathLike, pred: str | os.PathLike) -> bool:
    """Whether ``rvos eval --gt GT --pred PRED`` names COCO-format files (both JSON files)."""
    return Path(gt).suffix == ".json" and Path(pred).suffix == ".json" and Path(gt).is_file()

"""Where a model's score comes from: segmentation or grounding.

For every expression of an annotated split, four predictions are scored (J&F, by expression kind):

* ``model``: the model's output (its selection rule);
* ``top1``: the single query with the best mean referring probability over the video;
* ``oracle``: the single query whose masks best overlap the target (mean IoU over the frames), chosen with the
  answer in hand: how well the queries segment, whatever the sentence says;
* ``ceiling``: the target itself squeezed through the model's mask grid (down to ``mask_stride`` of the padded
  input and back up): what the mask resolution allows.

``model`` far below ``oracle`` says the model does not read the sentence (grounding); ``oracle`` far below
``ceiling`` says no query segments the target well (segmentation).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rvos.data.schema import normalize_text
from rvos.data.splits import open_split
from rvos.data.transforms import resize_frames, resized_shape
from rvos.engine.predict_split import split_instances
from rvos.eval.metrics import jaccard_and_f
from rvos.models.meta.base import upsample_masks

ROWS = ("model", "top1", "oracle", "ceiling")


def mean_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """pred (Q, T, H, W), gt (T, H, W) bool -> (Q,) mean IoU over frames (both empty: 1)."""
    inter = (pred & gt).flatten(2).sum(-1).float()
    union = (pred | gt).flatten(2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean(-1)


def squeeze_through_mask_grid(model, masks: torch.Tensor, model_size: tuple[int, int],
                              size: tuple[int, int]) -> torch.Tensor:
    """masks (..., H, W) at the input's ``size`` -> bool (..., H, W): resized to ``model_size``, padded, averaged down
    to the model's mask grid and brought back up as its masks are (the ``ceiling`` row)."""
    grid = model.pad(F.interpolate(masks.float().flatten(0, -3)[None], size=model_size, mode="bilinear",
                                   align_corners=False)[0])
    h, w = grid.shape[-2:]
    low = F.interpolate(grid[None], size=(h // model.mask_stride, w // model.mask_stride), mode="area")[0]
    return (upsample_masks(low - 0.5, model.mask_stride, model_size, size) > 0).view(masks.shape)


@torch.inference_mode()
def diagnose(model, cfg, split_dir: str | os.PathLike, videos: list[str] | None = None,
             progress: bool = True) -> dict:
    """{row: {"all": J&F, kind: J&F, ...}} for the rows of :data:`ROWS`, over the split's expressions (or those of
    ``videos``). Each video is encoded whole (one window)."""
    split = open_split(Path(split_dir))
    names = videos if videos is not None else list(split.videos)
    instances = split_instances(cfg.infer, split, getattr(getattr(model.cfg, "instances", None), "max_instances", None))
    model.eval()
    device = next(model.parameters()).device
    scores: dict[str, list[tuple[str, float]]] = {row: [] for row in ROWS}
    for name in tqdm(names, desc="diagnose", unit="video", disable=not progress, leave=False):
        video = split.video(name)
        exps = [e for e in video.expressions.values() if normalize_text(e.text)]
        frames = split.read_frames(name)
        size = frames.shape[1:3]
        model_size = resized_shape(*size, cfg.data.short_side, cfg.data.max_long_side)
        x = torch.from_numpy(resize_frames(frames, model_size)).to(device).permute(0, 3, 1, 2).float().div(255)
        x = model.pad(x)
        extra = {}
        if instances is not None:  # the video's instances, resized as the frames are
            masks = torch.from_numpy(instances(name)(range(len(frames)))).to(device).float()
            masks = F.interpolate(masks, size=model_size, mode="nearest") > 0.5 if len(masks) else \
                torch.zeros(0, len(frames), *model_size, dtype=torch.bool, device=device)
            extra["instances"] = lambda start, stop, m=masks: m[:, start:stop]
        session = model.start_session(model.prepare_text([normalize_text(e.text) for e in exps]).to(device),
                                      cfg.infer.score_threshold, **extra)
        session.observe(x, 0)
        session.decode()
        selected = session.predict(x, 0)
        candidates = session.candidates(x, 0)
        for exp, out, (probs, logits) in zip(exps, selected, candidates):
            gt = split.target_masks(name, exp.exp_id)
            gt_t = torch.from_numpy(gt)
            queries = upsample_masks(logits.transpose(0, 1), model.mask_stride, model_size, size) > 0  # (Q, T, H, W)
            preds = {
                "model": out.masks(model.mask_stride, model_size, size).cpu().numpy(),
                "top1": queries[probs.mean(0).argmax()].cpu().numpy(),
                "oracle": queries[mean_iou(queries.cpu(), gt_t).argmax()].cpu().numpy(),
                "ceiling": squeeze_through_mask_grid(model, gt_t, model_size, size).cpu().numpy(),
            }
            for row, pred in preds.items():
                j, f = jaccard_and_f(gt, pred)
                scores[row].append((exp.kind or "all", float((j.mean() + f.mean()) / 2)))
    out = {}
    for row, values in scores.items():
        by_kind: dict[str, list[float]] = {}
        for kind, v in values:
            by_kind.setdefault(kind, []).append(v)
        out[row] = {"all": float(np.mean([v for _, v in values]))} | {k: float(np.mean(v))
                                                                       for k, v in sorted(by_kind.items())}
    return out

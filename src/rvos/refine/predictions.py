"""Refine a folder of predictions of any method: ``PRED/<video>/<exp_id>/<frame>.png`` (the layout ``rvos infer``
writes and ``rvos eval`` reads) -> the same layout in ``OUT``, every mask through a
:data:`~rvos.engine.inference.MaskRefiner` (SAM-HQ for ``rvos refine``) with the split's frames.

Everything is checked before the first mask is refined: every predicted video must be in the split (and its
expressions and frames too), so predictions made for another split fail at once. A video's frames are read
``window`` at a time and every expression's mask of a frame is refined together (SAM-HQ encodes the frame once).
The output is written into a hidden folder beside ``OUT`` and renamed into place at the end: an interrupted run
leaves no partial output, and an existing ``OUT`` is replaced only with ``overwrite`` and only once the new one is
complete.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvos.data.frames import read_label_png, write_mask_png
from rvos.data.splits import ReferringSplit, open_split
from rvos.errors import DataError
from rvos.fileio import atomic_folder

log = logging.getLogger(__name__)


@dataclass
class PredictedVideo:
    name: str
    pngs: dict[str, dict[int, Path]]  # exp_id -> frame index -> the prediction's PNG


def _folders(path: Path) -> list[Path]:
    """Sub-folders, without hidden ones (an interrupted ``rvos infer`` leaves ``.<video>.partial``)."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_predictions(pred_dir: Path, split: ReferringSplit) -> list[PredictedVideo]:
    """The predicted videos, expressions and frames, each checked against the split."""
    if not pred_dir.is_dir():
        raise DataError(f"predictions folder {pred_dir} does not exist (rvos infer writes "
                        "PRED/<video>/<exp_id>/<frame>.png)")
    videos = []
    for folder in _folders(pred_dir):
        if folder.name not in split.videos:
            raise DataError(f"{folder}: the split {split.split_dir} has no video {folder.name!r}. Give --split-dir "
                            "the split these predictions were made for")
        video = split.video(folder.name)
        index = {name: i for i, name in enumerate(video.frames)}
        pngs = {}
        for exp in _folders(folder):
            if exp.name not in video.expressions:
                raise DataError(f"{exp}: video {folder.name!r} of {split.split_dir} has no expression {exp.name!r}. "
                                "Give --split-dir the split these predictions were made for")
            frames = {}
            for png in sorted(exp.glob("*.png")):
                if png.stem not in index:
                    raise DataError(f"{png}: video {folder.name!r} of {split.split_dir} has no frame {png.stem!r}")
                frames[index[png.stem]] = png
            pngs[exp.name] = frames
        videos.append(PredictedVideo(folder.name, pngs))
    if not videos:
        raise DataError(f"{pred_dir} holds no predictions (expected PRED/<video>/<exp_id>/<frame>.png)")
    return videos


def check_output(pred_dir: Path, out: Path, overwrite: bool) -> None:
    """``out`` can be written without touching the predictions or, unless ``overwrite``, an earlier output."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file: --out takes a folder")
    pred, target = pred_dir.resolve(), out.resolve()
    if target == pred or pred in target.parents or target in pred.parents:
        raise DataError(f"--out {out} is, is inside or holds the predictions folder {pred_dir}: choose another "
                        "folder (the predictions are never replaced)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} already exists and is not empty: choose another --out or pass --overwrite")


def _refine_video(refiner, split: ReferringSplit, video: PredictedVideo, out: Path, window: int) -> int:
    exps = list(video.pngs)
    out.mkdir(parents=True)
    for exp in exps:
        (out / exp).mkdir()
    frames = sorted({t for per_exp in video.pngs.values() for t in per_exp})
    names = split.video(video.name).frames
    written = 0
    for start in range(0, len(frames), window):
        chunk = frames[start:start + window]
        images = split.read_frames(video.name, chunk)  # (n, H, W, 3)
        masks = np.zeros((len(exps), len(chunk), *images.shape[1:3]), dtype=bool)
        for k, exp in enumerate(exps):
            for j, t in enumerate(chunk):
                png = video.pngs[exp].get(t)
                if png is None:
                    continue
                labels = read_label_png(png)
                if labels.shape != images.shape[1:3]:
                    raise DataError(f"{png} is {labels.shape[0]}x{labels.shape[1]} but the video's frames are "
                                    f"{images.shape[1]}x{images.shape[2]}")
                masks[k, j] = labels != 0
        refined = refiner(images, masks)
        for k, exp in enumerate(exps):
            for j, t in enumerate(chunk):
                if t in video.pngs[exp]:
                    write_mask_png(out / exp / f"{names[t]}.png", refined[k, j])
                    written += 1
    return written


def refine_predictions(refiner, pred_dir: str | os.PathLike, split_dir: str | os.PathLike, out: str | os.PathLike,
                       overwrite: bool = False, window: int = 16, progress: bool = True) -> dict:
    """Refine every mask PNG of ``pred_dir`` with ``refiner`` (a MaskRefiner) and the frames of ``split_dir`` into
    ``out`` (same layout). Returns ``{"videos": .., "masks": ..}``, the counts refined."""
    pred_dir, out = Path(pred_dir), Path(out)
    split = open_split(split_dir)
    check_output(pred_dir, out, overwrite)
    videos = scan_predictions(pred_dir, split)
    masks = 0
    with atomic_folder(out) as tmp:
        for video in tqdm(videos, desc="refine", unit="video", disable=not progress, leave=False):
            masks += _refine_video(refiner, split, video, tmp / video.name, window)
    log.info("refined %d masks of %d videos into %s", masks, len(videos), out)
    return {"videos": len(videos), "masks": masks}

"""Predict every expression of a split into ``OUT/<video>/<exp_id>/<frame>.png`` (the layout ``rvos eval``
reads).

Each video's masks are written into a hidden folder and renamed into place when the video is complete, so an
interrupted or failed run leaves only complete videos; a video whose predictions are all present is skipped
(run again to finish an interrupted split). A video that cannot be read is reported and skipped, the others are
still predicted, and the run ends with an error listing the failures. An expression with an empty sentence gets
empty masks (and a warning): evaluation still needs a prediction for it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvos.data.frames import write_mask_png
from rvos.data.schema import normalize_text
from rvos.data.splits import open_split
from rvos.data.vis_results import VisInstances
from rvos.engine.inference import Predictor, split_source
from rvos.errors import DataError, RvosError
from rvos.fileio import atomic_folder

log = logging.getLogger(__name__)


def _complete(out: Path, video) -> bool:
    return all((out / video.name / e / f"{f}.png").is_file() for e in video.expressions for f in video.frames)


def split_instances(infer_cfg, split, top: int | None = None):
    """``infer.instances`` -> (video name -> the video's instance source for the Predictor: its ``top`` best
    instances), or None. A results file is checked against the split first (videos, frame counts, sizes)."""
    if infer_cfg.instances is None:
        return None
    if infer_cfg.instances != "annotated":
        vis = VisInstances.read(infer_cfg.instances, infer_cfg.instance_videos)
        vis.check_against(split)
        named = set(vis.video_names)
        none = lambda indices: np.zeros((0, len(indices), 1, 1), dtype=bool)  # noqa: E731 (a video without any)
        return lambda video: (lambda indices: vis.masks(video, list(indices), top=top)) if video in named else none

    def source(video: str):
        ids = split.object_ids(video)

        def masks(indices: range) -> np.ndarray:
            objects = split.masks(video, ids, list(indices))  # (N, n, H, W)
            return objects[objects.reshape(len(objects), -1).any(1)]  # those visible in the window

        return masks

    return source


def predict_split(predictor: Predictor, split_dir: str | os.PathLike, out: str | os.PathLike,
                  overwrite: bool = False, progress: bool = True, videos: list[str] | None = None) -> int:
    """Returns the number of videos predicted (skipped complete ones not counted)."""
    split = open_split(split_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = videos if videos is not None else list(split.videos)
    instance_cfg = getattr(predictor.model.cfg, "instances", None)
    instances = split_instances(predictor.cfg.infer, split, getattr(instance_cfg, "max_instances", None))
    failures, done = [], 0
    for name in tqdm(names, desc="infer", unit="video", disable=not progress, leave=False):
        video = split.video(name)
        if not overwrite and _complete(out, video):
            continue
        empty = [e for e, x in video.expressions.items() if not normalize_text(x.text)]
        if empty:
            log.warning("video %s: expressions %s have empty sentences; their masks are empty", name, empty)
        exp_ids = list(video.expressions)
        try:
            with atomic_folder(out / name) as tmp:
                for exp_id in exp_ids:
                    (tmp / exp_id).mkdir()
                texts = [video.expressions[e].text for e in exp_ids]
                source = None if instances is None else instances(name)
                for frame in predictor.predict(split_source(split, name), texts, instances=source):
                    frame_name = video.frames[frame.index]
                    for k, exp_id in enumerate(exp_ids):
                        write_mask_png(tmp / exp_id / f"{frame_name}.png", frame.masks[k])
        except DataError as exc:
            failures.append(f"  {name}: {exc}")
            log.error("video %s skipped: %s", name, exc)
            continue
        done += 1
    if failures:
        raise RvosError(f"{len(failures)} of {len(names)} videos could not be predicted (the others are in {out}):\n"
                        + "\n".join(failures))
    return done

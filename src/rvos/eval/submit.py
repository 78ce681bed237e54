"""Package predictions as the benchmark servers take them, after checking they are complete.

* MeViS v1 (Codalab) and v2 (Codabench): ``<video>/<exp_id>/<frame>.png`` at the root of the zip, every expression
  included (a v2 no-target expression with its empty PNGs).
* Ref-YouTube-VOS: ``Annotations/<video>/<exp_id>/<frame>.png``, for the validation videos only (the videos of
  ``meta_expressions/test`` are left out when that file is present, as the server expects 202 videos).

Every PNG must have the video's size: the annotations' or the frames' where the split has them; otherwise (a split
folder holding only ``meta_expressions.json``) all of a video's PNGs must agree with its first one.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

from tqdm import tqdm

from rvos.data.splits import YTVOSSplit, load_json, open_split
from rvos.errors import DataError, EvalError
from rvos.eval.problems import IncompletePredictions, Problem
from rvos.fileio import atomic_path


def _png_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR, or None when the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _known_size(split, video: str) -> tuple[int, int] | None:
    try:
        return split.frame_size(video)
    except DataError:  # neither annotations nor frames say it
        return None


def submission_entries(split_dir: str | os.PathLike, pred_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """[(PNG path, name in the zip)] for every frame of every expression; raises
    :class:`~rvos.eval.problems.IncompletePredictions` when any is missing or wrong."""
    split = open_split(split_dir)
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EvalError(f"prediction folder {pred_dir} does not exist")
    names = list(split.videos)
    prefix = ""
    if isinstance(split, YTVOSSplit):
        prefix = "Annotations/"
        test_meta = split.root / "meta_expressions" / "test" / "meta_expressions.json"
        if split.name == "valid" and test_meta.is_file():
            test_videos = set(load_json(test_meta).get("videos", {}))
            names = [n for n in names if n not in test_videos]
    entries, problems = [], []
    for name in names:
        video = split.video(name)
        size, known = None, True
        for exp_id in video.expressions:
            for frame in video.frames:
                rel = f"{name}/{exp_id}/{frame}.png"
                path = pred_dir / rel
                if not path.is_file():
                    problems.append(Problem(name, exp_id, frame))
                    continue
                got = _png_size(path)
                if size is None and known:
                    size = _known_size(split, name)
                    known = size is not None
                if got is None:
                    problems.append(Problem(name, exp_id, frame, "not a PNG"))
                    continue
                size = size or got  # the video's first PNG, when the split does not say its size
                if got != size:
                    expected = "expected" if known else "while the video's first PNG is"
                    problems.append(Problem(name, exp_id, frame,
                                            f"size {got[0]}x{got[1]}, {expected} {size[0]}x{size[1]}"))
                else:
                    entries.append((path, prefix + rel))
    if problems:
        raise IncompletePredictions(split, pred_dir, problems, "the server would reject or misscore them")
    return entries


def write_submission(split_dir: str | os.PathLike, pred_dir: str | os.PathLike, out: str | os.PathLike,
                     progress: bool = True) -> int:
    """Check completeness, then write the zip atomically; returns the number of PNGs in it."""
    entries = submission_entries(split_dir, pred_dir)
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for path, arcname in tqdm(entries, desc="zip", unit="png", disable=not progress, leave=False):
                zf.write(path, arcname)
    return len(entries)

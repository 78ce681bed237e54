"""Package predictions as the benchmark servers take them, after checking they are complete.

* MeViS (Codalab / Codabench): ``<video>/<exp_id>/<frame>.png`` at the root of the zip.
* Ref-YouTube-VOS: ``Annotations/<video>/<exp_id>/<frame>.png``, for the validation videos only (the videos of
  ``meta_expressions/test`` are left out when that file is present, as the server expects 202 videos).
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

from tqdm import tqdm

from rvos.data.splits import YTVOSSplit, load_json, open_split
from rvos.errors import EvalError
from rvos.fileio import atomic_path


def _png_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR, or None when the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def submission_entries(split_dir: str | os.PathLike, pred_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """[(PNG path, name in the zip)] for every frame of every expression; raises listing every problem."""
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
        size = None
        for exp_id in video.expressions:
            for frame in video.frames:
                rel = f"{name}/{exp_id}/{frame}.png"
                path = pred_dir / rel
                if not path.is_file():
                    problems.append(f"  missing: {rel}")
                    continue
                got = _png_size(path)
                size = size or split.frame_size(name)
                if got is None:
                    problems.append(f"  not a PNG: {rel}")
                elif got != size:
                    problems.append(f"  wrong size: {rel}: {got[0]}x{got[1]}, expected {size[0]}x{size[1]}")
                else:
                    entries.append((path, prefix + rel))
    if problems:
        raise EvalError(f"{len(problems)} problems in {pred_dir}; the server would reject or misscore it:\n"
                        + "\n".join(problems))
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

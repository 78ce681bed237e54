"""Write a split's ground truth in the prediction layout (``OUT/<video>/<exp_id>/<frame>.png``, 0/255).

Users ask for an RLE-to-PNG converter; it is also the identity check of the evaluation: the exported masks score
J&F = 1 against their split.
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from rvos.data.frames import write_mask_png
from rvos.data.splits import open_split
from rvos.errors import DataError


def export_masks(split_dir: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> int:
    """Write every expression's target masks; returns the number of PNGs written."""
    split = open_split(split_dir)
    if not split.has_masks:
        raise DataError(f"{split.split_dir} has no ground-truth masks to export")
    out = Path(out)
    count = 0
    for name, video in tqdm(split.videos.items(), desc="export", unit="video", disable=not progress, leave=False):
        for exp_id in video.expressions:
            masks = split.target_masks(name, exp_id)
            for frame, mask in zip(video.frames, masks):
                write_mask_png(out / name / exp_id / f"{frame}.png", mask)
                count += 1
    return count

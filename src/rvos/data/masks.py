"""Binary masks that can report their bounding box and decode only a region.

Scoring a frame only needs the box that holds both masks, so a mask stored as a COCO RLE (MeViS) is decoded only
inside that box, and a mask read from a PNG is compared with zero only inside it. Both kinds answer ``box`` and
``crop(region)``; ``region`` is ``(y0, y1, x0, x1)`` with exclusive ends.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # inclusive (y0, y1, x0, x1)


def dense_box(mask: np.ndarray) -> Box | None:
    """Inclusive (y0, y1, x0, x1) bounds of the non-zero pixels of an 8-bit or bool mask, or None when empty."""
    if mask.dtype not in (np.uint8, np.bool_):
        mask = mask != 0
    if mask.flags.c_contiguous:
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    elif mask.T.flags.c_contiguous:  # column-major: measure the transpose
        y, x, h, w = cv2.boundingRect(mask.T.view(np.uint8))
    else:
        x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
    return None if w == 0 else (y, y + h - 1, x, x + w - 1)


class DenseMask:
    """A mask held as a full array (any dtype; non-zero = foreground)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.box = dense_box(array)

    def crop(self, region: tuple[int, int, int, int]) -> np.ndarray:
        y0, y1, x0, x1 = region
        return self.array[y0:y1, x0:x1] != 0


class RunLengthMask:
    """The union of objects' masks, each held as COCO run lengths (column-major, starting with background)."""

    def __init__(self, runs: Sequence[np.ndarray], size: tuple[int, int]):
        self.size = size
        self.bounds = [np.concatenate(([0], np.cumsum(r))) for r in runs]
        boxes = [b for b in (self._runs_box(bounds) for bounds in self.bounds) if b is not None]
        self.box: Box | None = None
        if boxes:
            self.box = (min(b[0] for b in boxes), max(b[1] for b in boxes),
                        min(b[2] for b in boxes), max(b[3] for b in boxes))

    def _runs_box(self, bounds: np.ndarray) -> Box | None:
        height = self.size[0]
        starts, ends = bounds[1:-1:2], bounds[2::2]  # foreground runs [start, end) in column-major order
        keep = ends > starts
        starts, ends = starts[keep], ends[keep]
        if starts.size == 0:
            return None
        x0, x1 = int(starts[0] // height), int((ends[-1] - 1) // height)
        if ((starts // height) != ((ends - 1) // height)).any():  # a run wraps into the next column
            return 0, height - 1, x0, x1
        return int((starts % height).min()), int(((ends - 1) % height).max()), x0, x1

    def crop(self, region: tuple[int, int, int, int]) -> np.ndarray:
        y0, y1, x0, x1 = region
        height = self.size[0]
        lo, hi = x0 * height, x1 * height
        out = np.zeros((x1 - x0, height), dtype=bool)
        values = np.zeros(1, dtype=bool)
        for bounds in self.bounds:
            if values.size != bounds.size - 1:
                values = np.zeros(bounds.size - 1, dtype=bool)
                values[1::2] = True
            lengths = np.diff(np.clip(bounds, lo, hi))
            out |= np.repeat(values, lengths).reshape(x1 - x0, height)
        return out[:, y0:y1].T

    def to_array(self) -> np.ndarray:
        return self.crop((0, self.size[0], 0, self.size[1]))

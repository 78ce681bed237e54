"""COCO run-length encoding of binary masks (the format of MeViS ``mask_dict.json``).

Encoding uses pycocotools. Decoding is done here, in numpy: the counts string is parsed (COCO's 6-bit,
delta-coded form) and expanded with ``np.repeat`` into the column-major mask, which is returned as a transposed
view instead of being copied into row-major order. That is several times faster than ``pycocotools.mask.decode``
and keeps the evaluation of a split bound by PNG decoding.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pycocotools import mask as coco_mask

from rvos.errors import DataError


def encode(mask: np.ndarray) -> dict:
    """Binary mask (H, W) -> ``{"size": [H, W], "counts": str}``, the compressed RLE MeViS stores."""
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(encoded["size"][0]), int(encoded["size"][1])], "counts": encoded["counts"].decode("ascii")}


def parse_counts(counts: bytes) -> np.ndarray:
    """Run lengths from COCO's compressed counts string.

    Each character is 48 plus 6 bits: 0x20 marks that the number goes on (characters 'P'..'o'), the low 5 bits
    are the next bits of the number (least significant first), and 0x10 on a number's last character makes it
    negative. Every count after the second is stored as the difference to the count two before it, so from
    there on the even and the odd counts are running sums.
    """
    chars = np.frombuffer(counts, dtype=np.uint8)
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64)
    if chars.min() < 48 or chars.max() > 111:
        raise ValueError("counts string holds characters outside COCO's alphabet")
    c = chars.astype(np.int64) - 48
    last = np.flatnonzero(c < 32)  # the final character of each number (no continuation bit)
    if last.size == 0 or last[-1] != c.size - 1:
        raise ValueError("counts string ends inside a number")
    first = np.concatenate(([0], last[:-1] + 1))
    if (last - first).max() >= 12:  # 12 characters hold 60 bits: more would overflow the run lengths' int64
        raise ValueError("counts string holds a number longer than 12 characters")
    shift = 5 * (np.arange(c.size) - np.repeat(first, last - first + 1))  # bit offset of each character's 5 bits
    runs = np.add.reduceat((c & 0x1F) << shift, first)  # the 5-bit groups never overlap: sum = or
    negative = (c[last] & 0x10) != 0  # sign-extend from the last character's top bit
    runs[negative] |= -1 << (shift[last[negative]] + 5)
    runs[2::2] = np.cumsum(runs[2::2])
    runs[1::2] = np.cumsum(runs[1::2])
    return runs


def parse(rle: Any, size: tuple[int, int], where: str) -> np.ndarray:
    """The run lengths of one RLE, checked against the frame size: background and foreground runs alternate,
    starting with background, over the mask in column-major order."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise DataError(f"{where}: expected an RLE object {{'size': [h, w], 'counts': ...}} or null, got {str(rle)[:80]!r}")
    try:
        rle_size = tuple(int(v) for v in rle["size"])
    except (TypeError, ValueError):
        raise DataError(f"{where}: RLE size {rle['size']!r} is not [height, width]") from None
    if rle_size != tuple(size):
        raise DataError(f"{where}: RLE size {list(rle_size)} does not match the frame size {list(size)} (height, width)")
    counts = rle["counts"]
    try:
        if isinstance(counts, str):
            runs = parse_counts(counts.encode("ascii"))
        elif isinstance(counts, bytes):
            runs = parse_counts(counts)
        elif isinstance(counts, list) and all(isinstance(c, int) for c in counts):
            runs = np.asarray(counts, dtype=np.int64)
        else:
            raise ValueError("counts must be a string or a list of integers")
        if (runs < 0).any() or runs.sum() != size[0] * size[1]:
            raise ValueError(f"runs cover {runs.sum()} pixels, expected {size[0] * size[1]}")
    except (ValueError, UnicodeEncodeError) as exc:
        raise DataError(f"{where}: corrupt RLE counts ({exc})") from None
    return runs


def decode(rle: Any, size: tuple[int, int], where: str) -> np.ndarray:
    """One RLE -> bool mask (H, W), a column-major view (no copy into row-major order)."""
    runs = parse(rle, size, where)
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(size[1], size[0]).T


def decode_many(rles: Sequence[Any], size: tuple[int, int], where: str) -> np.ndarray:
    """Decode RLEs (``None`` = object absent) to a stack (N, H, W) of bool masks, checking each one's size.
    The stack is column-major per frame (a transposed view), like the masks pycocotools returns."""
    out = np.zeros((len(rles), size[1], size[0]), dtype=bool)  # (N, W, H): filled column-major
    for i, r in enumerate(rles):
        if r is not None:
            out[i] = decode(r, size, f"{where}, frame {i}").T
    return out.transpose(0, 2, 1)

"""The prompts SAM-HQ refines a predicted mask with (the PVUW 2024 MeViS 2nd-place report, section 2.4): the mask's
box, points drawn uniformly inside the mask (positive) and points drawn uniformly outside it within the box
(negative).

Counts are exact when the mask has enough pixels: a mask (or the box's background) with fewer pixels than the
points asked for gives every one of its pixels once and draws the rest among them with replacement, so each prompt
has the same number of points and SAM sees each of them. A mask that fills its box (a rectangle) has no background
inside the box: its prompt has no negative points.

The draw is seeded by the seed and the mask's own pixels (a hash of the packed mask), so a mask always gets the
same points, whichever video, window, frame batch or sentence order it comes in: ``rvos refine`` on saved
predictions and ``infer.refine`` during inference prompt the same mask with the same points (their masks agree up
to SAM-HQ's float rounding in batches of other sizes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

POSITIVE, NEGATIVE = 1, 0  # SAM's point labels


@dataclass
class MaskPrompt:
    box: np.ndarray  # (4,) x0, y0, x1, y1: the mask's extreme columns and rows (pixel indices, inclusive)
    points: np.ndarray  # (N, 2) x, y pixel indices: the positive points, then the negative ones
    labels: np.ndarray  # (N,) POSITIVE or NEGATIVE


def mask_rng(mask: np.ndarray, seed: int) -> np.random.Generator:
    """A generator seeded by ``seed`` and the mask's pixels (and shape) only."""
    digest = hashlib.blake2b(np.packbits(mask).tobytes() + np.asarray(mask.shape, np.int64).tobytes(),
                             digest_size=16).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([seed, *words])


def _draw(available: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices into ``available`` items, uniformly: distinct when there are enough; otherwise every item
    once and the rest with replacement; none when there is no item."""
    if available == 0 or count == 0:
        return np.zeros(0, np.int64)
    if available >= count:
        return np.sort(rng.choice(available, count, replace=False))
    return np.concatenate([np.arange(available), rng.choice(available, count - available, replace=True)])


def mask_prompt(mask: np.ndarray, seed: int = 0, positives: int = 10, negatives: int = 5) -> MaskPrompt | None:
    """The prompt of a (H, W) bool mask; None for an empty mask (which stays empty)."""
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    rng = mask_rng(mask, seed)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
    pos = _draw(ys.size, positives, rng)
    by, bx = np.nonzero(~mask[y0:y1 + 1, x0:x1 + 1])  # the background inside the box
    neg = _draw(by.size, negatives, rng)
    points = np.concatenate([np.stack([xs[pos], ys[pos]], 1), np.stack([bx[neg] + x0, by[neg] + y0], 1)])
    labels = np.concatenate([np.full(pos.size, POSITIVE), np.full(neg.size, NEGATIVE)])
    return MaskPrompt(np.array([x0, y0, x1, y1], np.int64), points.astype(np.int64), labels.astype(np.int64))

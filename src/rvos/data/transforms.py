"""Clip-consistent transforms: every frame and mask of a clip gets the same resize, flip and colour change.

A clip is ``(frames (T, H, W, 3) uint8, masks (T, H, W) bool, text)``; masks may be ``None`` at inference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

_LEFT_RIGHT = re.compile(r"\b(left|right)(?=(wards?|most|-hand)?\b)", re.IGNORECASE)


def swap_left_right(text: str) -> str:
    """'the dog running to the left' -> 'the dog running to the right' (also leftward/rightmost/left-hand)."""

    def swap(m: re.Match) -> str:
        word = m.group(1)
        new = "right" if word.lower() == "left" else "left"
        return new.capitalize() if word[0].isupper() else new

    return _LEFT_RIGHT.sub(swap, text)


def resized_shape(height: int, width: int, short_side: int, max_long_side: int) -> tuple[int, int]:
    """(H, W) with the short side at ``short_side`` unless that puts the long side above ``max_long_side``."""
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_long_side:
        scale = max_long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frames.shape[1:3] == size:
        return frames
    interp = cv2.INTER_AREA if size[0] < frames.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=interp) for f in frames])


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if masks.shape[1:3] == size:
        return masks
    return np.stack(
        [cv2.resize(m.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) for m in masks]
    ).astype(bool)


@dataclass
class ClipTransform:
    """Resize to a short side (capped long side), random horizontal flip that also swaps left/right in the text,
    and photometric jitter (brightness, contrast, saturation), all drawn once per clip."""

    short_side: int
    max_long_side: int
    flip_prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    def __call__(self, frames, masks, text, rng: np.random.Generator | None = None):
        frames, masks, flipped = self.apply(frames, masks, rng)
        return frames, masks, swap_left_right(text) if flipped else text

    def apply(self, frames, masks, rng: np.random.Generator | None = None):
        """The transform without the text: (frames, masks, whether the clip was flipped). A flipped clip's sentences
        (its own, and any other about its video) need :func:`swap_left_right`."""
        size = resized_shape(frames.shape[1], frames.shape[2], self.short_side, self.max_long_side)
        frames = resize_frames(frames, size)
        masks = None if masks is None else resize_masks(masks, size)
        if rng is None:
            return frames, masks, False
        flipped = self.flip_prob > 0 and rng.random() < self.flip_prob
        if flipped:
            frames = frames[:, :, ::-1]
            masks = None if masks is None else masks[:, :, ::-1]
        if self.brightness or self.contrast or self.saturation:
            frames = self._jitter(frames, rng)
        return (np.ascontiguousarray(frames), None if masks is None else np.ascontiguousarray(masks),
                bool(flipped))

    def _jitter(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = frames.astype(np.float32)
        b = 1 + rng.uniform(-self.brightness, self.brightness)
        c = 1 + rng.uniform(-self.contrast, self.contrast)
        s = 1 + rng.uniform(-self.saturation, self.saturation)
        x = x * b
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * c + mean
        grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
        x = (x - grey[..., None]) * s + grey[..., None]
        return np.clip(x, 0, 255).astype(np.uint8)

"""Synthetic scenes: objects (shape x colour x size) moving over a textured, moving-noise background.

Objects are drawn back to front, so nearer objects occlude farther ones; an object's mask is its visible part, and
it is empty (a null RLE in ``mask_dict.json``) in frames where it has left the picture or is fully hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rvos.data.synth.motions import Motion, draw_motion

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = {
    "red": (215, 40, 35),
    "green": (40, 175, 60),
    "blue": (45, 85, 225),
    "yellow": (235, 210, 40),
    "purple": (150, 55, 195),
    "white": (240, 240, 240),
}
SIZES = {"small": 0.065, "big": 0.11}  # half-size as a fraction of the frame's short side

_SHIFT = 4  # sub-pixel bits for cv2 drawing, so slow motions move smoothly
_ONE = 1 << _SHIFT


@dataclass
class SceneObject:
    obj_id: int
    shape: str
    color: str
    size: str
    motion: Motion
    centers: np.ndarray  # (T, 2) x, y in pixels

    @property
    def appearance(self) -> tuple[str, str, str]:
        return self.size, self.color, self.shape

    def facts(self) -> frozenset[str]:
        return frozenset({f"size:{self.size}", f"color:{self.color}", f"shape:{self.shape}"}) | self.motion.facts()


def _draw(canvas: np.ndarray, shape: str, center: np.ndarray, half: float, value: int) -> None:
    cx, cy = center * _ONE
    h = half * _ONE
    if shape == "circle":
        cv2.circle(canvas, (int(cx), int(cy)), int(h), value, -1, cv2.LINE_8, _SHIFT)
        return
    if shape == "square":
        pts = [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    elif shape == "triangle":
        pts = [(cx, cy - 1.15 * h), (cx + 1.15 * h, cy + 0.85 * h), (cx - 1.15 * h, cy + 0.85 * h)]
    elif shape == "diamond":
        pts = [(cx, cy - 1.3 * h), (cx + 1.3 * h, cy), (cx, cy + 1.3 * h), (cx - 1.3 * h, cy)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    cv2.fillPoly(canvas, [np.array(pts, dtype=np.int32)], value, cv2.LINE_8, _SHIFT)


def _place(offsets: np.ndarray, half: float, height: int, width: int, rng: np.random.Generator,
           may_leave: bool) -> np.ndarray:
    """A start position so that the trajectory stays in the picture (or, when ``may_leave``, crosses an edge)."""
    start = np.empty(2)
    for axis, length in ((0, width), (1, height)):
        lo = half - offsets[:, axis].min()
        hi = length - half - offsets[:, axis].max()
        if may_leave and np.ptp(offsets[:, axis]) > 0:
            # start inside the picture, but near the edge the motion heads for, so the object goes out
            ahead = offsets[:, axis].max() > -offsets[:, axis].min()
            start[axis] = rng.uniform(length - 2.5 * half, length - 1.5 * half) if ahead else rng.uniform(1.5 * half, 2.5 * half)
        elif lo <= hi:
            start[axis] = rng.uniform(lo, hi)
        else:  # the motion is longer than the picture: centre it
            start[axis] = (lo + hi) / 2
    return start + offsets


def make_objects(rng: np.random.Generator, num_frames: int, height: int, width: int, num_objects: int,
                 lookalike_prob: float, leave_prob: float) -> list[SceneObject]:
    """Objects with random appearance and motion; with ``lookalike_prob`` a group of 2-3 identical-looking
    objects whose motions differ (only motion tells them apart)."""
    appearances: list[tuple[str, str, str]] = []
    groups = []
    if num_objects >= 2 and rng.random() < lookalike_prob:
        k = int(min(num_objects, rng.integers(2, 4)))
        app = (str(rng.choice(list(SIZES))), str(rng.choice(list(COLORS))), str(rng.choice(SHAPES)))
        appearances += [app] * k
        groups.append(list(range(k)))
    while len(appearances) < num_objects:
        app = (str(rng.choice(list(SIZES))), str(rng.choice(list(COLORS))), str(rng.choice(SHAPES)))
        if app not in appearances:  # look-alikes only where a group is meant
            appearances.append(app)
    motions: list[Motion] = []
    for i in range(num_objects):
        group = next((g for g in groups if i in g), [i])
        taken = {motions[j].facts() for j in group if j < i}
        motions.append(draw_motion(rng, exclude=taken))
    objects = []
    short = min(height, width)
    for i, ((size, color, shape), motion) in enumerate(zip(appearances, motions)):
        half = SIZES[size] * short
        offsets = motion.offsets(num_frames, height, width)
        may_leave = motion.name in ("turn_around", "move") and rng.random() < leave_prob
        centers = _place(offsets, half, height, width, rng, may_leave)
        objects.append(SceneObject(i + 1, shape, color, size, motion, centers))
    order = rng.permutation(num_objects)  # random depth order and file order, so look-alikes are not always first
    objects = [objects[j] for j in order]
    for new_id, obj in enumerate(objects, start=1):
        obj.obj_id = new_id
    return objects


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth multi-octave noise (height, width, 3) float in about [-1, 1], tinted."""
    tex = np.zeros((height, width), np.float32)
    for scale, amp in ((16, 1.0), (6, 0.5), (2, 0.25)):
        small = rng.standard_normal((max(2, height // scale), max(2, width // scale))).astype(np.float32)
        tex += amp * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    tex /= np.abs(tex).max() + 1e-6
    tint = rng.uniform(0.7, 1.0, size=3).astype(np.float32)
    return tex[..., None] * tint


def render(rng: np.random.Generator, objects: list[SceneObject], num_frames: int, height: int,
           width: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) uint8 and visible masks (num_objects, T, H, W) bool, objects drawn back to front."""
    margin = int(0.3 * max(height, width))
    tex = _texture(rng, height + 2 * margin, width + 2 * margin)
    base = rng.uniform(70, 150, size=3).astype(np.float32)
    pan = rng.uniform(-0.6, 0.6, size=2)  # camera pan in pixels per frame
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    masks = np.zeros((len(objects), num_frames, height, width), bool)
    for t in range(num_frames):
        ox = int(np.clip(margin + pan[0] * t, 0, 2 * margin))
        oy = int(np.clip(margin + pan[1] * t, 0, 2 * margin))
        img = base + 45.0 * tex[oy:oy + height, ox:ox + width]
        ids = np.zeros((height, width), np.uint8)
        for k, obj in enumerate(objects):
            half = SIZES[obj.size] * min(height, width)
            _draw(ids, obj.shape, obj.centers[t], half, k + 1)
        for k, obj in enumerate(objects):
            visible = ids == k + 1
            masks[k, t] = visible
            img[visible] = COLORS[obj.color]
        img += rng.normal(0, 6.0, size=img.shape).astype(np.float32)  # sensor noise, new every frame
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames, masks

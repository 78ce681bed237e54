"""Which frames of a video make a training clip.

* ``local``: a random reference frame and neighbours drawn within ``frame_range`` of it (as ReferFormer and LMPM
  sample), so the clip shows short-term motion.
* ``global``: the video cut into ``clip_len`` equal segments and one frame drawn from each (as MUTR samples), so
  the clip spans the whole video and long-term motion ("turns around", "stops") is visible.

Both return sorted frame indices; a video shorter than the clip repeats frames.
"""

from __future__ import annotations

import numpy as np


def local_indices(num_frames: int, clip_len: int, frame_range: int, rng: np.random.Generator) -> list[int]:
    ref = int(rng.integers(num_frames))
    lo, hi = max(0, ref - frame_range), min(num_frames, ref + frame_range + 1)
    pool = np.array([i for i in range(lo, hi) if i != ref])
    if clip_len == 1:
        return [ref]
    replace = len(pool) < clip_len - 1
    if len(pool) == 0:
        return [ref] * clip_len
    others = rng.choice(pool, size=clip_len - 1, replace=replace)
    return sorted([ref, *(int(i) for i in others)])


def global_indices(num_frames: int, clip_len: int, rng: np.random.Generator) -> list[int]:
    edges = np.linspace(0, num_frames, clip_len + 1)
    indices = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        lo_i, hi_i = int(np.floor(lo)), max(int(np.floor(lo)) + 1, int(np.ceil(hi)))
        indices.append(int(rng.integers(lo_i, min(hi_i, num_frames))))
    return sorted(indices)


def uniform_indices(num_frames: int, clip_len: int) -> list[int]:
    """Evenly spaced frames, deterministic (the centre of each segment)."""
    edges = np.linspace(0, num_frames, clip_len + 1)
    return [min(num_frames - 1, int((lo + hi) / 2)) for lo, hi in zip(edges[:-1], edges[1:])]


def sample_indices(mode: str, num_frames: int, clip_len: int, frame_range: int, rng: np.random.Generator) -> list[int]:
    if mode == "local":
        return local_indices(num_frames, clip_len, frame_range, rng)
    if mode == "global":
        return global_indices(num_frames, clip_len, rng)
    raise ValueError(f"unknown frame sampling {mode!r} (expected 'local' or 'global')")

"""Videos users bring: a video file (MP4, AVI, WebM, MOV, MKV), an animated GIF, or a folder of frames, read as
a :class:`VideoSource` whose frames are decoded on demand, window by window.

A video file is never silently cut short or silently damaged: when it is opened, what OpenCV decodes is compared
with what ffmpeg decodes and with the frame count the container records (:mod:`rvos.data.decoding`); the decoder
that reads more is used, and frames that neither can decode, or that decode with errors, are listed in the
source's ``warnings``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageSequence

from rvos.data import decoding
from rvos.data.frames import FRAME_EXTENSIONS, read_frame
from rvos.errors import DataError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v")
INDEXED_CONTAINERS = (".mp4", ".avi", ".mov", ".m4v")  # they record how many frames they hold


@dataclass
class VideoSource:
    """Frames read on demand: ``read(indices) -> (n, H, W, 3) uint8 RGB``."""

    num_frames: int
    size: tuple[int, int]  # (H, W)
    read: Callable[[Sequence[int]], np.ndarray]
    name: str = ""
    fps: float = 10.0
    # What could not be read faithfully (video files only): a message per problem, the frames that could not be
    # decoded at all (they are not in the ``num_frames`` read) and those decoded with errors, numbered as in the file.
    warnings: list[str] = field(default_factory=list)
    unreadable_frames: list[int] = field(default_factory=list)
    damaged_frames: list[int] = field(default_factory=list)


def _ranges(indices: Sequence[int], limit: int = 8) -> str:
    """[3, 4, 5, 9] -> "3-5, 9" (at most ``limit`` ranges, then how many more)."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:limit])
    return text + (f" and {len(runs) - limit} more ranges" if len(runs) > limit else "")


def _container_indices(times: list[float], fps: float, expected: int) -> list[int] | None:
    """Each decoded frame's index in the container's numbering, from its time; None when the times do not map
    one to one onto ``range(expected)`` (variable frame rate, odd timestamps)."""
    if fps <= 0 or not times or any(t != t for t in times):
        return None
    indices = [round((t - min(0.0, times[0])) * fps) for t in times]
    if len(set(indices)) != len(indices) or min(indices) < 0 or max(indices) >= expected:
        return None
    return indices


def _open_file(path: Path) -> VideoSource:
    """A video file, read by OpenCV or, when OpenCV decodes fewer frames, by ffmpeg; frames neither can decode,
    and frames decoded with errors, are reported (``warnings``, ``unreadable_frames``, ``damaged_frames``)."""
    cv_count, declared, fps, size = decoding.cv2_count(path)
    checked = decoding.scan(path)
    ff_count = len(checked.times) if checked else 0
    if cv_count == 0 and ff_count == 0:
        if checked is None and declared == 0:
            raise DataError(f"{path} is not a readable video (unknown codec or corrupt file)")
        raise DataError(f"{path} holds no frames that can be decoded (empty or corrupt video)")
    if ff_count > cv_count:  # OpenCV gave up early: read with ffmpeg
        log.info("%s: OpenCV decodes %d frames, ffmpeg %d: reading it with ffmpeg", path, cv_count, ff_count)
        reader = decoding.FFmpegReader(path, checked.size or size)
        count, size = ff_count, checked.size or size
    else:
        reader = decoding.CV2Reader(path)
        count = cv_count
    # Only containers with a frame index say how many frames they hold; for the others (WebM, MKV) OpenCV's count
    # is an estimate from the duration, and only the two decoders are compared.
    expected = max(count, declared if path.suffix.lower() in INDEXED_CONTAINERS else 0)
    source = VideoSource(count, size, reader.read, path.stem, fps if 0 < fps < 1000 else 10.0)
    indices = _container_indices(checked.times, fps, expected) if checked and ff_count == count else None
    if count < expected:
        lost = sorted(set(range(expected)) - set(indices)) if indices else list(range(count, expected))
        source.unreadable_frames = lost
        source.warnings.append(
            f"{path}: {len(lost)} of the {expected} frames the file holds cannot be decoded or hold no picture (frames "
            f"{_ranges(lost)}, numbered as in the file); the {count} readable frames are read in order")
    if checked and ff_count == count:
        flagged = checked.corrupt_frames + (checked.error_frames if count == expected else [])
        damaged = sorted({indices[i] if indices else i for i in flagged if i < count})
        if damaged:
            source.damaged_frames = damaged
            # ffmpeg's decoder and its frame log run in separate threads: an error is logged when the decoder meets
            # it, which can be a few frames before the damaged frame is logged, never after it
            source.warnings.append(f"{path}: the decoder reported errors from about frame{'s' * (len(damaged) > 1)} "
                                   f"{_ranges(damaged)} on (numbered as in the file; logged up to a few frames early): "
                                   "those frames, and the next ones until a key frame, may be damaged")
    for warning in source.warnings:
        log.warning(warning)
    return source


def _open_gif(path: Path) -> VideoSource:
    try:
        with Image.open(path) as im:
            frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
            duration = im.info.get("duration", 100) or 100
    except Exception as exc:
        raise DataError(f"{path} is not a readable GIF ({exc})") from None
    if not frames:
        raise DataError(f"{path} holds no frames")
    stack = np.stack(frames)
    return VideoSource(len(frames), stack.shape[1:3], lambda idx: stack[list(idx)], path.stem, 1000.0 / duration)


def _open_folder(path: Path) -> VideoSource:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS)
    if not files:
        raise DataError(f"{path} holds no frames ({', '.join(FRAME_EXTENSIONS)} files)")
    size = read_frame(files[0]).shape[:2]

    def read(indices):
        frames = [read_frame(files[i]) for i in indices]
        for i, f in zip(indices, frames):
            if f.shape[:2] != size:
                raise DataError(f"{files[i]}: size {f.shape[:2]} differs from the first frame's {size}")
        return np.stack(frames)

    return VideoSource(len(files), size, read, path.name)


def open_video(path: str | os.PathLike) -> VideoSource:
    """A video file, a GIF, or a folder of frames."""
    path = Path(path)
    if path.is_dir():
        return _open_folder(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return _open_gif(path)
    if suffix in VIDEO_EXTENSIONS:
        return _open_file(path)
    raise DataError(f"{path}: unsupported format {suffix or '(none)'}; give a video file "
                    f"({', '.join(VIDEO_EXTENSIONS)}), a .gif, or a folder of frames")


def array_source(frames: np.ndarray | Sequence[np.ndarray], fps: float = 10.0) -> VideoSource:
    """Frames already in memory: (T, H, W, 3) uint8 RGB, or a list of such frames."""
    stack = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
    if stack.ndim != 4 or stack.shape[-1] != 3 or stack.shape[0] == 0:
        raise DataError(f"frames must be a non-empty (T, H, W, 3) RGB array, got shape {stack.shape}")
    if stack.dtype != np.uint8:
        raise DataError(f"frames must be uint8, got {stack.dtype}")
    return VideoSource(len(stack), stack.shape[1:3], lambda idx: stack[list(idx)], "array", fps)

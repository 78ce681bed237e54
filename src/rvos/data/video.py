"""Videos users bring: a video file (MP4, AVI, WebM, MOV, MKV), an animated GIF, or a folder of frames, read as
a :class:`VideoSource` whose frames are decoded on demand, window by window."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageSequence

from rvos.data.frames import FRAME_EXTENSIONS, read_frame
from rvos.errors import DataError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v")


@dataclass
class VideoSource:
    """Frames read on demand: ``read(indices) -> (n, H, W, 3) uint8 RGB``."""

    num_frames: int
    size: tuple[int, int]  # (H, W)
    read: Callable[[Sequence[int]], np.ndarray]
    name: str = ""
    fps: float = 10.0


class _Capture:
    """Sequential reading of a video file; re-opened when asked for an earlier frame."""

    def __init__(self, path: Path):
        self.path = path
        self.cap = None
        self.position = 0

    def _open(self) -> None:
        if self.cap is not None:
            self.cap.release()
        self.cap = cv2.VideoCapture(str(self.path))
        self.position = 0
        if not self.cap.isOpened():
            raise DataError(f"{self.path} is not a readable video")

    def read(self, indices: Sequence[int]) -> np.ndarray:
        out = []
        for i in indices:
            if self.cap is None or i < self.position:
                self._open()
            while self.position < i:
                self.cap.grab()
                self.position += 1
            ok, frame = self.cap.read()
            self.position += 1
            if not ok:
                raise DataError(f"{self.path}: frame {i} could not be decoded")
            out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        return np.stack(out)


def _open_file(path: Path) -> VideoSource:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path} is not a readable video (unknown codec or corrupt file)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    ok, first = cap.read()
    if not ok:
        raise DataError(f"{path} holds no frames (empty or corrupt video)")
    count = 1
    while cap.grab():
        count += 1
    cap.release()
    reader = _Capture(path)
    return VideoSource(count, first.shape[:2], reader.read, path.stem, float(fps) if 0 < fps < 1000 else 10.0)


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

"""Writing videos: MP4 (H.264 through the ffmpeg that imageio-ffmpeg ships, playable in browsers) and GIF,
streamed frame by frame and written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from rvos.fileio import atomic_path


class VideoWriter:
    """``with VideoWriter("out.mp4", fps) as w: w.append(frame)``; the file appears only when complete."""

    def __init__(self, path: str | os.PathLike, fps: float = 10.0, max_gif_frames: int = 300):
        self.path = Path(path)
        self.fps = max(1.0, float(fps))
        self.kind = self.path.suffix.lower()
        if self.kind not in (".mp4", ".gif"):
            raise ValueError(f"{self.path}: write .mp4 or .gif")
        self.max_gif_frames = max_gif_frames
        self.frames: list[Image.Image] = []
        self.writer = None
        self.count = 0

    def __enter__(self) -> "VideoWriter":
        self._atomic = atomic_path(self.path)
        self.tmp = self._atomic.__enter__()
        return self

    def append(self, frame: np.ndarray) -> None:
        self.count += 1
        if self.kind == ".gif":
            if len(self.frames) < self.max_gif_frames:
                self.frames.append(Image.fromarray(frame))
            return
        if self.writer is None:
            import imageio_ffmpeg

            h, w = frame.shape[:2]
            self.size = (w + w % 2, h + h % 2)  # H.264 with yuv420p needs even sides
            self.writer = imageio_ffmpeg.write_frames(str(self.tmp), self.size, fps=self.fps, codec="libx264",
                                                      pix_fmt_out="yuv420p", macro_block_size=1,
                                                      output_params=["-movflags", "+faststart"])
            self.writer.send(None)
        h, w = frame.shape[:2]
        if (w, h) != self.size:
            frame = np.pad(frame, ((0, self.size[1] - h), (0, self.size[0] - w), (0, 0)))
        self.writer.send(np.ascontiguousarray(frame))

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
            if exc_type is None:
                if self.kind == ".gif":
                    if not self.frames:
                        raise ValueError("no frames to write")
                    self.frames[0].save(self.tmp, save_all=True, append_images=self.frames[1:], loop=0,
                                        duration=int(1000 / self.fps), optimize=False)
                elif self.count == 0:
                    raise ValueError("no frames to write")
        except BaseException as error:
            self._atomic.__exit__(type(error), error, error.__traceback__)  # removes the temporary file
            raise
        self._atomic.__exit__(exc_type, exc, tb)  # in place when complete, else removed

def write_video(path: str | os.PathLike, frames, fps: float = 10.0) -> Path:
    with VideoWriter(path, fps) as w:
        for f in frames:
            w.append(f)
    return Path(path)

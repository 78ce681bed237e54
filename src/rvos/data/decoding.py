"""Decoding video files, and finding out what a decoder could not decode.

Two decoders read a file: OpenCV's (in-process, the default) and the ffmpeg executable that imageio-ffmpeg ships.
They are not equally tolerant: OpenCV gives up after a run of undecodable packets (as in OpenCV's own sample
``tree.avi``, where it stops after 68 of 449 frames) while ffmpeg goes on. :func:`scan` decodes the file once
with ffmpeg and records the timestamp of every frame it decodes and the frames near which the decoder reported
errors (damaged data it concealed), so that the caller can compare the counts, choose the decoder that reads
more, and say which frames are lost or damaged.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

import rvos.data.frames  # noqa: F401  (quiets the ffmpeg inside OpenCV before any VideoCapture)
from rvos.errors import DataError

_SHOWINFO = re.compile(r"\[Parsed_showinfo[^\]]*\] \[info\] n:\s*\d+ .*?pts_time:(\S+)")


@dataclass
class Scan:
    """What ffmpeg decoded: each frame's time (s), in output order, and frames (indices into that order) with
    problems: ``corrupt_frames`` the decoder flagged as decoded from damaged data, ``error_frames`` those next
    to be output when an error was logged (the demuxer reads ahead, so errors about data past a truncation are
    logged some frames early: they say where frames are damaged only when none are lost)."""

    times: list[float] = field(default_factory=list)
    error_frames: list[int] = field(default_factory=list)
    corrupt_frames: list[int] = field(default_factory=list)
    size: tuple[int, int] | None = None  # (H, W)


def scan(path: str | os.PathLike) -> Scan | None:
    """Decode every frame of the first video stream with ffmpeg (no output); None when ffmpeg is unavailable or
    cannot open the file at all."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None
    # One decoding thread keeps the error messages in step with the frames; passthrough keeps every decoded frame
    # once (no duplicates to fill gaps); max_error_rate 1 decodes to the end however damaged the file is.
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "level+info", "-threads", "1", "-i", str(path),
           "-map", "0:v:0", "-fps_mode", "passthrough", "-max_error_rate", "1", "-vf", "showinfo", "-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=3600)
    except (OSError, subprocess.TimeoutExpired):
        return None
    result = Scan()
    for line in proc.stderr.splitlines():
        match = _SHOWINFO.search(line)
        if match:
            try:
                result.times.append(float(match.group(1)))
            except ValueError:
                result.times.append(float("nan"))
            if result.size is None and (s := re.search(r" s:(\d+)x(\d+) ", line)):
                result.size = (int(s.group(2)), int(s.group(1)))
        elif "] [warning] corrupt decoded frame" in line:
            result.corrupt_frames.append(len(result.times))  # reported as the frame leaves the decoder
        elif "] [error] " in line and not line.startswith(("[in#", "[out#")):
            result.error_frames.append(len(result.times))
    if not result.times and proc.returncode != 0:
        return None
    return result


def cv2_count(path: Path) -> tuple[int, int, float, tuple[int, int]]:
    """(frames OpenCV decodes, frames the container declares or 0, fps or 0, (H, W)) by decoding every frame."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0, 0, 0.0, (0, 0)
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        ok, first = cap.read()
        if not ok:
            return 0, declared, fps, (0, 0)
        count = 1
        while cap.grab():
            count += 1
        return count, declared, fps, first.shape[:2]
    finally:
        cap.release()


class CV2Reader:
    """Sequential reading with OpenCV; re-opened when asked for an earlier frame."""

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


class FFmpegReader:
    """Sequential reading through the ffmpeg executable (the frames :func:`scan` counts, in the same order);
    re-started when asked for an earlier frame."""

    def __init__(self, path: Path, size: tuple[int, int]):
        self.path = path
        self.size = size
        self.frames = None
        self.position = 0

    def _open(self) -> None:
        import imageio_ffmpeg

        self.close()
        self.frames = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24", output_params=[
            "-map", "0:v:0", "-fps_mode", "passthrough", "-max_error_rate", "1"])  # its log is captured, not shown
        meta = next(self.frames)
        self.size = (int(meta["size"][1]), int(meta["size"][0]))
        self.position = 0

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
            self.frames = None

    def read(self, indices: Sequence[int]) -> np.ndarray:
        out = []
        h, w = self.size
        for i in indices:
            if self.frames is None or i < self.position:
                self._open()
            data = None
            while self.position <= i:
                data = next(self.frames, None)
                self.position += 1
                if data is None:
                    raise DataError(f"{self.path}: frame {i} could not be decoded")
            out.append(np.frombuffer(data, np.uint8).reshape(h, w, 3))
        return np.stack(out)

    def __del__(self) -> None:
        self.close()

"""Inference over whole videos, in bounded memory, for any method.

A video is read and encoded in windows of ``window`` frames. The method's :class:`~rvos.models.meta.base.
InferenceSession` observes every window (keeping only what it needs, such as per-frame queries), decodes once for
the whole video, and then gives each window's masks and scores per sentence with the method's own selection rule.
The Predictor only windows, resizes, batches the sentences into one session, brings masks to the video's size and
applies an optional mask refiner. Memory therefore does not grow with the video's length (only a method's
per-frame state does, a few kilobytes a frame), while the method still sees the whole video. A video that fits in
one window is read once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from rvos.config import Config
from rvos.data.schema import normalize_text
from rvos.data.transforms import resize_frames, resized_shape
from rvos.data.video import VideoSource
from rvos.errors import ConfigError

log = logging.getLogger(__name__)

# (frames (n, H, W, 3) uint8, masks (K, n, H, W) bool) -> refined masks (K, n, H, W) bool
MaskRefiner = Callable[[np.ndarray, np.ndarray], np.ndarray]
# frame indices -> a video's instance masks there (K, n, H, W) bool at the video's size, best first
InstanceSource = Callable[[range], np.ndarray]


@dataclass
class FrameResult:
    index: int
    masks: np.ndarray  # (K, H, W) bool, one per sentence
    scores: np.ndarray  # (K,): per sentence, the referring probability of what the frame's mask shows
    frame: np.ndarray  # (H, W, 3) uint8 RGB, the frame itself (for drawing)


class Predictor:
    """Runs a model (any :class:`~rvos.models.meta.base.RvosModel`) on videos."""

    def __init__(self, model: torch.nn.Module, cfg: Config, device: str | torch.device = "cpu",
                 window: int | None = None, score_threshold: float | None = None, refiner: MaskRefiner | None = None):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.cfg = cfg
        self.window = window or cfg.infer.window
        self.threshold = score_threshold if score_threshold is not None else cfg.infer.score_threshold
        self.refiner = refiner

    def model_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return resized_shape(size[0], size[1], self.cfg.data.short_side, self.cfg.data.max_long_side)

    def _tensor(self, frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        frames = resize_frames(frames, self.model_size(size))
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        return self.model.pad(x)

    def _instances(self, instances: InstanceSource | None, source: VideoSource):
        """A video's instance masks at the video's size -> the session's ``(start, stop) -> masks (K, n, H, W)``
        at the model's input size, or None."""
        if instances is None:
            return None
        cfg = getattr(self.model.cfg, "instances", None)
        if cfg is None or not cfg.enabled:
            raise ConfigError(f"instance masks were given, but {self.model.cfg.name!r} has no instance block "
                              "(only MUTR with model.instances.enabled=true reads them)")
        size = self.model_size(source.size)

        def window(start: int, stop: int) -> torch.Tensor:
            masks = instances(range(start, stop))  # (K, n, H, W) bool
            if masks.shape[0] == 0:
                return torch.zeros(0, stop - start, *size, dtype=torch.bool, device=self.device)
            x = torch.from_numpy(np.ascontiguousarray(masks)).to(self.device).float()
            return torch.nn.functional.interpolate(x, size=size, mode="nearest") > 0.5

        return window

    @torch.inference_mode()
    def predict(self, source: VideoSource, texts: Sequence[str],
                instances: InstanceSource | None = None) -> Iterator[FrameResult]:
        """Masks of every sentence in every frame, frame by frame. An empty sentence gets empty masks.
        ``instances``: the video's instance masks (best first) for the frames asked, for a method that reads them
        (MUTR's instance block)."""
        model = self.model
        texts = [normalize_text(t) for t in texts]
        active = [i for i, t in enumerate(texts) if t]
        t_len = source.num_frames
        windows = [(s, min(s + self.window, t_len)) for s in range(0, t_len, self.window)]
        single = len(windows) == 1
        session = None
        cached = None  # the frames of a video of one window, read once
        if active:
            provider = self._instances(instances, source)
            extra = {} if provider is None else {"instances": provider}
            session = model.start_session(model.prepare_text([texts[i] for i in active]).to(self.device),
                                          self.threshold, **extra)
            for start, stop in windows:
                frames = source.read(range(start, stop))
                cached = frames if single else None
                session.observe(self._tensor(frames, source.size), start)
            session.decode()
        model_size = self.model_size(source.size)
        for start, stop in windows:
            frames = cached if cached is not None else source.read(range(start, stop))
            n = stop - start
            masks = np.zeros((len(texts), n, *source.size), dtype=bool)
            scores = np.zeros((len(texts), n), dtype=np.float32)
            if session is not None:
                for k, out in zip(active, session.predict(self._tensor(frames, source.size), start)):
                    masks[k] = out.masks(model.mask_stride, model_size, source.size).cpu().numpy()
                    scores[k] = out.scores.float().cpu().numpy()
            if self.refiner is not None and active:
                masks[active] = self.refiner(frames, masks[active])
            for t in range(n):
                yield FrameResult(start + t, masks[:, t], scores[:, t], frames[t])


def split_source(split, video: str) -> VideoSource:
    v = split.video(video)
    return VideoSource(len(v), split.frame_size(video), lambda idx: split.read_frames(video, list(idx)), video)


__all__ = ["FrameResult", "Predictor", "VideoSource", "split_source"]

"""Inference over whole videos, in bounded memory.

A video is read, encoded and decoded in windows of ``window`` frames. Pass one keeps, per sentence, only the
small per-frame outputs of the frame query decoder (queries and enhanced words); the video query decoder then
sees every frame of the video at once; pass two encodes each window again to get its mask features and writes
that window's masks. Memory therefore does not grow with the video's length (only the per-frame queries do, a
few kilobytes a frame), while the video queries still see the whole video. A video that fits in one window is
encoded once.

The image backbone runs once per frame whatever the number of sentences; everything after it is per sentence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rvos.config import Config
from rvos.data.schema import normalize_text
from rvos.data.transforms import resize_frames, resized_shape
from rvos.data.video import VideoSource

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    index: int
    masks: np.ndarray  # (K, H, W) bool, one per sentence
    scores: np.ndarray  # (K,): per sentence, the best referring probability among queries with a mask here
    frame: np.ndarray  # (H, W, 3) uint8 RGB, the frame itself (for drawing)


@dataclass
class _Sentence:
    tokens: torch.Tensor  # (1, L)
    words: torch.Tensor  # (1, L, C)
    padding: torch.Tensor  # (1, L)
    sentence: torch.Tensor  # (1, C)
    queries: list  # per window (n, Q, C)
    enhanced: torch.Tensor | None = None  # running sum of the enhanced words (L, C)
    probs: torch.Tensor | None = None  # (T, Q) referring probability per frame and query
    embeds: torch.Tensor | None = None  # (T, Q, D) mask embedding per frame and query


class Predictor:
    """Runs a model on videos. The model provides ``tokenize``, ``encode_text``, ``pad``, ``image_features``,
    ``encode_frames``, ``mask_features`` and ``decode_video`` (see :class:`rvos.models.meta.vlm.VLMModel`)."""

    def __init__(self, model: torch.nn.Module, cfg: Config, device: str | torch.device = "cpu",
                 window: int | None = None, score_threshold: float | None = None):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.cfg = cfg
        self.window = window or cfg.infer.window
        threshold = score_threshold if score_threshold is not None else cfg.infer.score_threshold
        self.threshold = threshold if threshold is not None else cfg.model.score_threshold

    def model_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return resized_shape(size[0], size[1], self.cfg.data.short_side, self.cfg.data.max_long_side)

    def _tensor(self, frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        frames = resize_frames(frames, self.model_size(size))
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        return self.model.pad(x)

    def _expand(self, s: _Sentence, n: int):
        return (s.words.expand(n, -1, -1), s.padding.expand(n, -1), s.sentence.expand(n, -1))

    @torch.inference_mode()
    def predict(self, source: VideoSource, texts: Sequence[str]) -> Iterator[FrameResult]:
        """Masks of every sentence in every frame, frame by frame. An empty sentence gets empty masks."""
        model = self.model
        texts = [normalize_text(t) for t in texts]
        active = [i for i, t in enumerate(texts) if t]
        tokens = model.tokenize([texts[i] for i in active]).to(self.device) if active else None
        sentences = []
        for k in range(len(active)):
            words, padding, sentence = model.encode_text(tokens[k:k + 1])
            sentences.append(_Sentence(tokens[k:k + 1], words, padding, sentence, []))
        t_len = source.num_frames
        windows = [(s, min(s + self.window, t_len)) for s in range(0, t_len, self.window)]
        single = len(windows) == 1
        cached_features: dict[int, torch.Tensor] = {}
        cached_frames = None
        # pass one: per-frame queries of every sentence
        for start, stop in windows:
            frames = source.read(range(start, stop))
            if single:
                cached_frames = frames
            features = model.image_features(self._tensor(frames, source.size))
            n = stop - start
            for k, s in enumerate(sentences):
                fo = model.encode_frames(features, *self._expand(s, n))
                s.queries.append(fo.queries)
                enhanced = fo.words.sum(0)
                s.enhanced = enhanced if s.enhanced is None else s.enhanced + enhanced
                if single:
                    cached_features[k] = fo.mask_features
        # the video decoder over the whole video
        for s in sentences:
            queries = torch.cat(s.queries)[None]  # (1, T, Q, C)
            vo = model.decode_video(queries, (s.enhanced / t_len)[None], s.padding, s.sentence)
            probs = vo.scores[-1].sigmoid()  # (1, Q) or (T, Q) when every frame is decoded alone
            embeds = vo.mask_embeds[-1]  # (1, T, Q, D) or (T, 1, Q, D)
            s.probs = probs.expand(t_len, -1) if probs.shape[0] == 1 else probs
            s.embeds = embeds[0] if embeds.shape[0] == 1 else embeds[:, 0]
            s.queries = []
        # pass two: masks, window by window
        h, w = self.model_size(source.size)
        for start, stop in windows:
            frames = cached_frames if single else source.read(range(start, stop))
            features = None if single else model.image_features(self._tensor(frames, source.size))
            n = stop - start
            masks = np.zeros((len(texts), n, *source.size), dtype=bool)
            scores = np.zeros((len(texts), n), dtype=np.float32)
            for k, s in enumerate(sentences):
                mask_features = cached_features[k] if single else model.mask_features(features, *self._expand(s, n)[:2])
                m, sc = self._masks(s, start, stop, mask_features, (h, w), source.size)
                masks[active[k]], scores[active[k]] = m, sc
            for t in range(n):
                yield FrameResult(start + t, masks[:, t], scores[:, t], frames[t])

    def _masks(self, s: _Sentence, start: int, stop: int, mask_features: torch.Tensor, model_size, out_size):
        """Masks (n, H, W) and scores (n,) of one sentence in frames start..stop."""
        probs = s.probs[start:stop]  # (n, Q)
        keep = probs > self.threshold
        n = stop - start
        out = torch.zeros(n, *out_size, dtype=torch.bool)
        scores = torch.zeros(n)
        if keep.any():
            queries = keep.any(0).nonzero().squeeze(1)  # only the queries some frame keeps
            logits = torch.einsum("tqd,tdhw->tqhw", s.embeds[start:stop, queries], mask_features)
            logits = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
            logits = logits[..., : model_size[0], : model_size[1]]
            logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
            fg = (logits > 0) & keep[:, queries, None, None]  # (n, q, H, W)
            out = fg.any(1).cpu()
            present = fg.flatten(2).any(-1)  # (n, q)
            scores = (probs[:, queries] * present).max(1).values.cpu()
        return out.numpy(), scores.numpy()


def split_source(split, video: str) -> VideoSource:
    v = split.video(video)
    return VideoSource(len(v), split.frame_size(video), lambda idx: split.read_frames(video, list(idx)), video)


__all__ = ["FrameResult", "Predictor", "VideoSource", "split_source"]

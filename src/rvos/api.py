"""The Python API: load a trained model, segment what sentences refer to in a video.

    from rvos import Segmenter

    seg = Segmenter.from_pretrained("runs/tiny")          # a run folder, a model folder or model.safetensors
    seg = Segmenter.from_pretrained("runs/tiny", refine=True)  # + SAM-HQ refinement (rvos.refine.RefineConfig)
    result = seg("my_video.mp4", "the dog running to the left")
    result.masks        # (T, H, W) bool
    result.scores       # (T,) referring confidence per frame

    for frame in seg.stream("long_video.mp4", ["the dog", "the ball"]):   # bounded memory, frame by frame
        frame.index, frame.masks, frame.scores                            # masks (K, H, W), scores (K,)

A video is a path (video file, GIF, folder of frames), a (T, H, W, 3) uint8 RGB array, or a
:class:`rvos.data.video.VideoSource`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from rvos.data.video import VideoSource, array_source, open_video
from rvos.errors import DataError


@dataclass
class Segmentation:
    text: str
    masks: np.ndarray  # (T, H, W) bool
    scores: np.ndarray  # (T,) float


class Segmenter:
    """A trained model wrapped for whole videos (see :class:`rvos.engine.inference.Predictor`)."""

    def __init__(self, model, config, device: str = "cpu", window: int | None = None,
                 score_threshold: float | None = None, refine=None):
        """``refine``: SAM-HQ refinement of every mask (:class:`rvos.refine.RefineConfig`); None: as the config's
        ``infer.refine`` says; True: on, with the config's settings or the defaults; False: off."""
        from rvos.engine.inference import Predictor
        from rvos.refine import RefineConfig

        self.config = config
        if refine is None or refine is True:
            refine = config.infer.refine or (RefineConfig() if refine else None)
        refiner = None
        if refine:
            from rvos.refine.sam_hq import build_refiner

            refiner = build_refiner(refine, device)
        self.predictor = Predictor(model, config, device, window=window, score_threshold=score_threshold,
                                   refiner=refiner)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu", window: int | None = None,
                        score_threshold: float | None = None, refine=None) -> "Segmenter":
        from rvos.engine.checkpoint import find_model, load_model

        model, cfg = load_model(find_model(path), device=device)
        return cls(model, cfg, device, window, score_threshold, refine)

    @staticmethod
    def source(video) -> VideoSource:
        if isinstance(video, VideoSource):
            return video
        if isinstance(video, (str, os.PathLike)):
            return open_video(video)
        if isinstance(video, (np.ndarray, list, tuple)):
            return array_source(video)
        raise DataError(f"a video is a path, a (T, H, W, 3) uint8 array or a VideoSource, not {type(video).__name__}")

    @staticmethod
    def _texts(text: str | Sequence[str]) -> list[str]:
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise DataError("give at least one sentence")
        empty = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if empty:
            raise DataError(f"sentence {empty[0] + 1} is empty: say what to segment")
        return texts

    def stream(self, video, text: str | Sequence[str]) -> Iterator:
        """Frame by frame: ``FrameResult(index, masks (K, H, W), scores (K,))``, in bounded memory."""
        return self.predictor.predict(self.source(video), self._texts(text))

    def __call__(self, video, text: str | Sequence[str]) -> Segmentation | list[Segmentation]:
        texts = self._texts(text)
        source = self.source(video)
        masks = np.zeros((len(texts), source.num_frames, *source.size), dtype=bool)
        scores = np.zeros((len(texts), source.num_frames), dtype=np.float32)
        for frame in self.predictor.predict(source, texts):
            masks[:, frame.index] = frame.masks
            scores[:, frame.index] = frame.scores
        results = [Segmentation(t, m, s) for t, m, s in zip(texts, masks, scores)]
        return results[0] if isinstance(text, str) else results


def _slug(text: str, limit: int = 40) -> str:
    keep = "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")
    while "__" in keep:
        keep = keep.replace("__", "_")
    return keep[:limit].rstrip("_") or "sentence"


def predict_to_folder(segmenter: Segmenter, video, texts: Sequence[str], out: str | os.PathLike,
                      overwrite: bool = False, overlay_video: bool = True, progress: bool = True) -> dict:
    """Segment ``texts`` in ``video`` and write ``OUT/masks/<k>_<sentence>/<frame>.png`` (0/255), an overlay
    video ``OUT/overlay.mp4`` (each sentence its colour, written on the frame) and ``OUT/result.json``.

    The video streams through in windows, so long videos use bounded memory. Everything is written into a hidden
    folder beside ``OUT`` and renamed into place when complete: a failure leaves no half-written output, and an
    existing ``OUT`` is replaced only with ``overwrite`` (and only once the new one is complete)."""
    from pathlib import Path

    from tqdm import tqdm

    from rvos.data.frames import write_mask_png
    from rvos.fileio import atomic_folder, write_json
    from rvos.viz.overlay import overlay, palette
    from rvos.viz.video_io import VideoWriter

    texts = Segmenter._texts(texts)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} already exists and is not empty: choose another --out or pass --overwrite")
    source = Segmenter.source(video)  # reads the video's header now: a bad video fails before anything is written
    folders = [f"{k}_{_slug(t)}" for k, t in enumerate(texts)]
    colors = palette(len(texts))
    per_frame = []
    with atomic_folder(out) as tmp:
        writer = VideoWriter(tmp / "overlay.mp4", source.fps) if overlay_video else None
        with writer if writer is not None else contextlib.nullcontext():
            frames = segmenter.stream(source, texts)
            for result in tqdm(frames, total=source.num_frames, desc="predict", unit="frame", disable=not progress,
                               leave=False):
                for k, folder in enumerate(folders):
                    write_mask_png(tmp / "masks" / folder / f"{result.index:05d}.png", result.masks[k])
                per_frame.append([round(float(s), 4) for s in result.scores])
                if writer is not None:
                    writer.append(overlay(result.frame, result.masks, texts, colors=colors))
        scores = np.array(per_frame).reshape(len(per_frame), len(texts))
        summary = {
            "video": source.name, "frames": source.num_frames, "size": list(source.size), "fps": source.fps,
            "warnings": source.warnings, "unreadable_frames": source.unreadable_frames,
            "damaged_frames": source.damaged_frames,
            "sentences": [{"text": t, "masks": f"masks/{f}", "color": list(c),
                           "frames_with_mask": int((scores[:, k] > 0).sum()), "mean_score": float(scores[:, k].mean())}
                          for k, (t, f, c) in enumerate(zip(texts, folders, colors))],
            "scores": per_frame,
        }
        write_json(tmp / "result.json", summary, indent=1)
    return summary


"""Several splits trained on as one, as SgMg pre-trains on RefCOCO, RefCOCO+ and RefCOCOg together (its
``--dataset_file all``: a ``ConcatDataset`` of the three).

A config names them as a list, each a split folder or a RefCOCO annotation file under ``data.root``::

    data:
      root: /data/coco
      train_split: [refcoco/instances_refcoco_train.json, refcoco+/instances_refcoco+_train.json,
                    refcocog/instances_refcocog_train.json]

The concatenation is a split like any other: its videos are every part's, each named ``<part>/<video>`` (``<part>``
the part's ``name``, e.g. ``refcoco+_train``, prefixed by its position where two parts share a name), so the clip
stream, its seeded epochs and the methods' ``prepare_training`` see one split of all the expressions, and an epoch
visits every expression of every part once, as a ``ConcatDataset`` under a random sampler does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from rvos.data.masks import DenseMask, RunLengthMask
from rvos.data.schema import Video
from rvos.data.splits import ReferringSplit, open_split
from rvos.errors import DataError


class ConcatSplit(ReferringSplit):
    layout = "concat"

    def __init__(self, parts: Sequence[ReferringSplit]):
        if not parts:
            raise ValueError("ConcatSplit needs at least one split")
        labels = [p.name for p in parts]
        if len(set(labels)) < len(labels):
            labels = [f"{k}.{label}" for k, label in enumerate(labels)]
        videos: dict[str, Video] = {}
        self._source: dict[str, tuple[ReferringSplit, str]] = {}  # video -> (part, its name there)
        for label, part in zip(labels, parts):
            for name, video in part.videos.items():
                new = f"{label}/{name}"
                videos[new] = Video(name=new, frames=video.frames, expressions=video.expressions)
                self._source[new] = (part, name)
        self.parts = tuple(parts)
        # split_dir names the parts (messages only: the concatenation has no folder of its own)
        super().__init__(Path(" + ".join(str(p.split_dir) for p in parts)), videos, Path(),
                         all(p.has_masks for p in parts))
        self.name = "+".join(labels)

    def _part(self, video: str) -> tuple[ReferringSplit, str]:
        try:
            return self._source[video]
        except KeyError:
            raise DataError(f"{self.split_dir}: no video {video!r} in this split") from None

    def frame_path(self, video: str, index: int) -> Path:
        part, name = self._part(video)
        return part.frame_path(name, index)

    def frame_size(self, video: str) -> tuple[int, int]:
        part, name = self._part(video)
        return part.frame_size(name)

    def read_frames(self, video: str, indices: Sequence[int] | None = None) -> np.ndarray:
        part, name = self._part(video)
        return part.read_frames(name, indices)

    def target_masks(self, video: str, exp_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        part, name = self._part(video)
        return part.target_masks(name, exp_id, indices)

    def object_masks(self, video: str, exp_id: str, indices: Sequence[int]) -> np.ndarray:
        part, name = self._part(video)
        return part.object_masks(name, exp_id, indices)

    def object_ids(self, video: str) -> tuple[str, ...]:
        part, name = self._part(video)
        return part.object_ids(name)

    def masks(self, video: str, anno_ids: Sequence[str], indices: Sequence[int]) -> np.ndarray:
        part, name = self._part(video)
        return part.masks(name, anno_ids, indices)

    def frame_targets(self, video: str, exp_id: str) -> list[DenseMask | RunLengthMask]:
        part, name = self._part(video)
        return part.frame_targets(name, exp_id)


def open_splits(paths: Sequence[str | os.PathLike]) -> ReferringSplit:
    """One split (:func:`~rvos.data.splits.open_split`), or several as one :class:`ConcatSplit`."""
    if not paths:
        raise DataError("no split to open: name at least one split folder or annotation file")
    parts = [open_split(p) for p in paths]
    return parts[0] if len(parts) == 1 else ConcatSplit(parts)

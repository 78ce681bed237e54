"""Video instance segmentation (VIS) results in the YouTube-VIS format, as DVIS and other VIS models write them.

MUTR's PVUW 2024 MeViS entry initialises its object queries from the top instance masks a VIS model found in each
video; this module reads those masks.

Two files, both standard YouTube-VIS:

* the results: a list of ``{"video_id": int, "score": float, "category_id": int, "segmentations": [COCO RLE
  {"size": [h, w], "counts": str or list} or null, one per frame]}``;
* the VIS dataset file the model was run on (e.g. ``valid.json``): ``{"videos": [{"id": int, "file_names":
  ["<video>/<frame>.jpg", ...], "height": h, "width": w, ...}], ...}``. A video's name is the folder of its
  ``file_names`` (one folder for all of them), its frames are their file stems, in order.

Both files are checked when read (every result's video, score, number of frames and RLE sizes); the RLE counts are
checked by :mod:`rvos.data.rle` when a video's masks are decoded, which happens only for the video and frames asked
for, or for every result by :meth:`VisInstances.check_masks`. :meth:`VisInstances.check_against` checks that the
results belong to a referring split (same videos, frame counts and frame sizes).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from rvos.data import rle
from rvos.data.splits import ReferringSplit, load_json
from rvos.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisVideo:
    """One video of the VIS dataset file."""

    video_id: int
    name: str
    frames: tuple[str, ...]  # file stems, in order
    size: tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class VisInstance:
    """One result: an instance track with its score and one RLE (or None, absent) per frame."""

    index: int  # position in the results file
    video_id: int
    score: float
    category_id: Any
    segmentations: list


def _read_json(path: Path, what: str) -> Any:
    try:
        return load_json(path)
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None
    except OSError as exc:
        raise DataError(f"{what}: {path} cannot be read ({exc.strerror or exc})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_videos(data: Any, path: Path) -> dict[int, VisVideo]:
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise DataError(f"{path}: expected a VIS dataset file, an object with a 'videos' list "
                        "(YouTube-VIS format, e.g. valid.json)")
    videos: dict[int, VisVideo] = {}
    names: dict[str, int] = {}
    for i, entry in enumerate(data["videos"]):
        where = f"{path}, video {i}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object with 'id', 'file_names', 'height' and 'width'")
        video_id = entry.get("id")
        if not _is_int(video_id):
            raise DataError(f"{where}: 'id' must be an integer, got {str(video_id)[:40]!r}")
        where = f"{path}, video {i} (id {video_id})"
        if video_id in videos:
            raise DataError(f"{where}: id {video_id} is repeated; each video needs its own id")
        files = entry.get("file_names")
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise DataError(f"{where}: 'file_names' must be a non-empty list of '<video>/<frame>.jpg' paths")
        paths = [PurePosixPath(f.replace("\\", "/")) for f in files]
        folders = sorted({str(p.parent) for p in paths})
        if len(folders) > 1:
            raise DataError(f"{where}: 'file_names' span several folders ({', '.join(folders[:4])}); a video's "
                            "frames must all be in one folder, the video's name")
        if folders[0] == ".":
            raise DataError(f"{where}: 'file_names' have no folder ({files[0]!r}); expected '<video>/<frame>.jpg'")
        height, width = entry.get("height"), entry.get("width")
        if not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
            raise DataError(f"{where}: 'height' and 'width' must be positive integers, got {height!r} x {width!r}")
        name = paths[0].parent.name
        if name in names:
            raise DataError(f"{where}: video {name!r} is also video id {names[name]}; each folder must be one video")
        names[name] = video_id
        videos[video_id] = VisVideo(video_id, name, tuple(p.stem for p in paths), (height, width))
    return videos


def _parse_results(data: Any, path: Path, videos: dict[int, VisVideo], videos_path: Path) -> list[VisInstance]:
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of results {{'video_id', 'score', 'category_id', "
                        "'segmentations'}} (YouTube-VIS results format)")
    instances = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise DataError(f"{path}, result {i}: expected an object with 'video_id', 'score' and 'segmentations'")
        video_id = entry.get("video_id")
        where = f"{path}, result {i} (video_id {video_id!r})"
        if not _is_int(video_id):
            raise DataError(f"{where}: 'video_id' must be an integer")
        if video_id not in videos:
            raise DataError(f"{where}: no video with this id in {videos_path}; pass the VIS dataset file the model "
                            "was run on")
        video = videos[video_id]
        where = f"{path}, result {i} (video_id {video_id}, video {video.name!r})"
        score = entry.get("score")
        if not (isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)):
            raise DataError(f"{where}: 'score' must be a finite number, got {str(score)[:40]!r}")
        segs = entry.get("segmentations")
        if not isinstance(segs, list) or len(segs) != len(video.frames):
            got = f"{len(segs)} entries" if isinstance(segs, list) else f"{type(segs).__name__}"
            raise DataError(f"{where}: 'segmentations' must be a list of {len(video.frames)} RLEs or nulls (one per "
                            f"frame of the video in {videos_path}), got {got}; were the results made on another "
                            "dataset file?")
        h, w = video.size
        for t, seg in enumerate(segs):
            if seg is None or (isinstance(seg, dict) and "counts" in seg and seg.get("size") == [h, w]):
                continue
            if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
                raise DataError(f"{where}, frame {t}: expected an RLE {{'size': [h, w], 'counts': ...}} or null, "
                                f"got {str(seg)[:80]!r}")
            raise DataError(f"{where}, frame {t}: RLE size {seg['size']!r} differs from the video's height and "
                            f"width [{h}, {w}] in {videos_path}; were the results made on another dataset file?")
        instances.append(VisInstance(i, video_id, float(score), entry.get("category_id"), segs))
    return instances


class VisInstances:
    """The instances a VIS model found in each video, ranked by score."""

    def __init__(self, results_path: Path, videos_path: Path, videos: dict[int, VisVideo],
                 instances: Sequence[VisInstance]):
        self.results_path = results_path
        self.videos_path = videos_path
        self._videos = {v.name: v for v in videos.values()}
        by_id: dict[int, list[VisInstance]] = {v: [] for v in videos}
        for inst in instances:
            by_id[inst.video_id].append(inst)
        # highest score first; sorted() is stable, so ties keep the order of the results file
        self._ranked = {videos[i].name: sorted(lst, key=lambda inst: -inst.score) for i, lst in by_id.items()}

    @classmethod
    def read(cls, results_path: str | os.PathLike, videos_path: str | os.PathLike) -> VisInstances:
        """Read a YouTube-VIS results file and the VIS dataset file (``videos``) the model was run on."""
        results_path, videos_path = Path(results_path), Path(videos_path)
        videos = _parse_videos(_read_json(videos_path, "VIS dataset file"), videos_path)
        instances = _parse_results(_read_json(results_path, "VIS results file"), results_path, videos, videos_path)
        log.info("%s: %d instances in %d of %d videos", results_path, len(instances),
                 len({inst.video_id for inst in instances}), len(videos))
        return cls(results_path, videos_path, videos, instances)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.results_path)!r}, videos={len(self._videos)})"

    @property
    def video_names(self) -> tuple[str, ...]:
        """Every video of the VIS dataset file, in its order (with or without instances)."""
        return tuple(self._videos)

    def video(self, name: str) -> VisVideo:
        try:
            return self._videos[name]
        except KeyError:
            raise DataError(f"no video {name!r} in {self.videos_path}, the VIS dataset file of "
                            f"{self.results_path}; run the VIS model on this video's dataset") from None

    def num_instances(self, video: str) -> int:
        """How many instances the results hold for the video (0 for a video without any)."""
        self.video(video)
        return len(self._ranked[video])

    def ranked(self, video: str, top: int | None = 20) -> list[VisInstance]:
        """The video's ``top`` instances by score (all of them for None), highest first, ties in file order."""
        self.video(video)
        if top is not None and (not _is_int(top) or top < 0):
            raise ValueError(f"top must be a non-negative integer or None, got {top!r}")
        return self._ranked[video][:top]

    def scores(self, video: str, top: int | None = 20) -> np.ndarray:
        """Scores (K,) float32 of :meth:`masks`' instances, in the same order."""
        return np.array([inst.score for inst in self.ranked(video, top)], dtype=np.float32)

    def masks(self, video: str, frames: Sequence[int] | None = None, top: int | None = 20) -> np.ndarray:
        """Masks (K, n, H, W) bool of the video's ``top`` instances by score in frames ``frames`` (indices; every
        frame for None), decoded now; a frame the instance is absent from (null) is empty. (0, n, H, W) for a video
        without instances."""
        v = self.video(video)
        indices = list(range(len(v.frames))) if frames is None else list(frames)
        for t in indices:
            if not isinstance(t, (int, np.integer)) or isinstance(t, bool) or not 0 <= t < len(v.frames):
                raise IndexError(f"frame index {t!r} out of range for video {video!r} of {len(v.frames)} frames")
        ranked = self.ranked(video, top)
        out = np.zeros((len(ranked), len(indices), *v.size), dtype=bool)  # (K, n, H, W)
        for k, inst in enumerate(ranked):
            where = f"{self.results_path}, result {inst.index} (video_id {inst.video_id}, video {video!r})"
            for j, t in enumerate(indices):
                seg = inst.segmentations[t]
                if seg is not None:
                    out[k, j] = rle.decode(seg, v.size, f"{where}, frame {t}")
        return out

    def check_masks(self) -> None:
        """Parse every RLE of every result (a corrupt one is a DataError naming it), before a long run."""
        for name, ranked in self._ranked.items():
            size = self._videos[name].size
            for inst in ranked:
                where = f"{self.results_path}, result {inst.index} (video_id {inst.video_id}, video {name!r})"
                for t, seg in enumerate(inst.segmentations):
                    if seg is not None:
                        rle.parse(seg, size, f"{where}, frame {t}")

    def check_against(self, split: ReferringSplit) -> None:
        """Check that the results belong to ``split``: every video with instances is one of its videos, and every
        video of the VIS dataset file that the split holds has its number of frames and frame size. Split videos
        without instances are allowed (their masks are empty)."""
        for name, v in self._videos.items():
            if name not in split.videos:
                if self._ranked[name]:
                    raise DataError(f"{self.results_path}: video {name!r} (video_id {v.video_id}) has instances but "
                                    f"is not in the split {split.split_dir}; use the results of a VIS model run "
                                    "on this split's videos")
                continue
            n = len(split.video(name).frames)
            if n != len(v.frames):
                raise DataError(f"video {name!r} (video_id {v.video_id}) has {len(v.frames)} frames in "
                                f"{self.videos_path} but {n} in the split {split.split_dir}; use the VIS dataset "
                                "file made from this split")
            size = tuple(split.frame_size(name))
            if size != v.size:
                raise DataError(f"video {name!r} (video_id {v.video_id}) is {v.size[0]}x{v.size[1]} (height x width) "
                                f"in {self.videos_path} but {size[0]}x{size[1]} in the split {split.split_dir}; use "
                                "the VIS dataset file made from this split")
        missing = sum(1 for name in split.videos if not self._ranked.get(name))
        if missing:
            log.info("%d of %d videos of %s have no instance in %s", missing, len(split.videos), split.split_dir,
                     self.results_path)

"""Readers of the official dataset layouts into the sample schema of :mod:`rvos.data.schema`.

Layouts:

* MeViS: ``<split>/JPEGImages/<video>/<frame>.jpg``, ``<split>/meta_expressions.json``
  (``videos -> {frames, expressions -> {exp, obj_id[], anno_id[]}}``) and ``<split>/mask_dict.json``
  (``str(anno_id) -> [COCO RLE or null per frame]``); the ``valid`` split has no ``mask_dict.json``. The two JSON
  files alone are enough to evaluate and to export masks: frame names come from the first, sizes from the RLEs.
  MeViS v2 (the TPAMI 2025 release) keeps the layout and names its expression file ``meta_expressions_v2.json``
  (``meta_expressions_v2_release.json`` for the unannotated ``valid`` split, ``meta_expressions_text_release.json``
  for a challenge's test split). It adds no-target expressions: an annotated expression with no ``anno_id`` refers to
  nothing, and its target is empty in every frame. The split records which release it is (``version``), so that
  scores of the two are never mixed.
* Ref-YouTube-VOS: ``meta_expressions/<split>/meta_expressions.json`` (``{exp, obj_id}`` per expression),
  ``<split>/JPEGImages``, and for annotated splits ``<split>/Annotations/<video>/<frame>.png``, palette PNGs whose
  pixel value is the object id. Ref-DAVIS17 converted to this layout (as ReferFormer's script does) reads the same.

* RefCOCO / RefCOCO+ / RefCOCOg (image pre-training): ``COCO_ROOT/<dataset>/instances_<dataset>_<split>.json`` and
  ``COCO_ROOT/train2014``, read by :mod:`rvos.data.refcoco` as one-frame videos.

:func:`open_split` takes the split folder (or RefCOCO's annotation file) and recognises the layout.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rvos.data import rle
from rvos.data.frames import FRAME_EXTENSIONS, image_size, read_frame, read_label_png
from rvos.data.masks import DenseMask, RunLengthMask
from rvos.data.schema import Expression, Video
from rvos.errors import DataError


def load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); re-download or regenerate it") from None


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int)):
        return (str(value),)
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return tuple(str(v) for v in value)
    raise DataError(f"{where}: expected an id or a list of ids, got {str(value)[:80]!r}")


def _parse_videos(meta: Any, path: Path, id_key: str) -> dict[str, Video]:
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DataError(f"{path}: expected an object with a 'videos' mapping at the top level")
    videos = {}
    for name, entry in meta["videos"].items():
        where = f"{path}, video {name!r}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object with 'frames' and 'expressions'")
        frames = entry.get("frames")
        if not isinstance(frames, list) or not frames or not all(isinstance(f, str) for f in frames):
            raise DataError(f"{where}: 'frames' must be a non-empty list of frame names")
        exps = entry.get("expressions")
        if not isinstance(exps, dict):
            raise DataError(f"{where}: 'expressions' must be a mapping of expression ids")
        expressions = {}
        for exp_id, exp in exps.items():
            ewhere = f"{where}, expression {exp_id!r}"
            if not isinstance(exp, dict) or not isinstance(exp.get("exp"), str):
                raise DataError(f"{ewhere}: expected an object with a string 'exp'")
            obj_ids = _str_list(exp.get("obj_id"), ewhere)
            anno_ids = _str_list(exp.get(id_key), ewhere)
            expressions[str(exp_id)] = Expression(
                exp_id=str(exp_id), text=exp["exp"], obj_ids=obj_ids, anno_ids=anno_ids, kind=exp.get("kind")
            )
        videos[name] = Video(name=name, frames=tuple(frames), expressions=expressions)
    return videos


class ReferringSplit:
    """One split of a referring dataset: its videos, frames, expressions and, when annotated, target masks."""

    layout = ""
    exif_orientation = True  # apply a JPEG frame's EXIF orientation when reading it

    def __init__(self, split_dir: Path, videos: dict[str, Video], frames_dir: Path, has_masks: bool):
        self.split_dir = split_dir
        self.name = split_dir.name
        self.videos = videos
        self.frames_dir = frames_dir
        self.has_masks = has_masks

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.split_dir)!r}, videos={len(self.videos)}, masks={self.has_masks})"

    def samples(self) -> list[tuple[str, str]]:
        """Every (video, expression id), in file order."""
        return [(v.name, e) for v in self.videos.values() for e in v.expressions]

    def kinds(self) -> list[str]:
        """The expression kinds the split records (empty when it records none)."""
        return sorted({e.kind for v in self.videos.values() for e in v.expressions.values() if e.kind})

    def _require_masks(self) -> None:
        if not self.has_masks:
            raise DataError(f"{self.split_dir} has no ground-truth masks: this split is not annotated")

    def video(self, name: str) -> Video:
        try:
            return self.videos[name]
        except KeyError:
            raise DataError(f"{self.split_dir}: no video {name!r} in this split") from None

    @functools.lru_cache(maxsize=None)
    def _frame_ext(self, video: str) -> str:
        stem = self.frames_dir / video / self.video(video).frames[0]
        for ext in FRAME_EXTENSIONS:
            if os.path.isfile(f"{stem}{ext}"):
                return ext
        raise DataError(f"frame {stem}.jpg does not exist (video {video!r} of {self.split_dir})")

    def frame_path(self, video: str, index: int) -> Path:
        return self.frames_dir / video / f"{self.video(video).frames[index]}{self._frame_ext(video)}"

    @functools.lru_cache(maxsize=4096)
    def frame_size(self, video: str) -> tuple[int, int]:
        """(height, width) of the video's frames: from its annotations where they record it (so that evaluation
        never needs the frames), else from the first frame's header."""
        size = self._annotated_size(video) if self.has_masks else None
        return size if size is not None else image_size(self.frame_path(video, 0))

    def _annotated_size(self, video: str) -> tuple[int, int] | None:
        return None

    def read_frames(self, video: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 RGB."""
        indices = range(len(self.video(video))) if indices is None else indices
        frames = [read_frame(self.frame_path(video, i), self.exif_orientation) for i in indices]
        size = self.frame_size(video)
        for i, frame in zip(indices, frames):
            if frame.shape[:2] != size:
                raise DataError(f"{self.frame_path(video, i)}: size {frame.shape[:2]} differs from the video's {size}")
        return np.stack(frames)

    def target_masks(self, video: str, exp_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """The expression's target (T, H, W) bool: the union of its objects' masks in each frame."""
        raise NotImplementedError

    def object_masks(self, video: str, exp_id: str, indices: Sequence[int]) -> np.ndarray:
        """Each referred object's masks (N_objects, T, H, W) bool, in the order of the expression's ids."""
        return self.masks(video, self.video(video).expressions[exp_id].anno_ids, indices)

    def object_ids(self, video: str) -> tuple[str, ...]:
        """Every annotated object of the video that an expression refers to (mask keys, in first-seen order)."""
        return tuple(dict.fromkeys(a for e in self.video(video).expressions.values() for a in e.anno_ids))

    def masks(self, video: str, anno_ids: Sequence[str], indices: Sequence[int]) -> np.ndarray:
        """The masks (N, T, H, W) bool of the objects ``anno_ids`` in frames ``indices``."""
        raise NotImplementedError

    def frame_targets(self, video: str, exp_id: str) -> list[DenseMask | RunLengthMask]:
        """The target of every frame as a mask that decodes only the region asked for (fast evaluation)."""
        return [DenseMask(m) for m in self.target_masks(video, exp_id)]


# The expression file of each MeViS release, by the name it is published under.
MEVIS_META_FILES = {"meta_expressions.json": "v1", "meta_expressions_v2.json": "v2",
                    "meta_expressions_v2_release.json": "v2", "meta_expressions_text_release.json": "v2"}


def mevis_meta_file(split_dir: Path) -> Path | None:
    """The MeViS expression file of a split folder (None when it has none); two releases' files in one folder are
    an error, since which one to read cannot be told."""
    found = [split_dir / name for name in MEVIS_META_FILES if (split_dir / name).is_file()]
    if len(found) > 1:
        releases = {MEVIS_META_FILES[p.name] for p in found}
        why = ("two releases' files: scores must be labelled with the right one" if len(releases) > 1
               else "which one to read cannot be told")
        raise DataError(f"{split_dir} holds {' and '.join(p.name for p in found)} ({why}): keep one expression file "
                        "per split folder (v1 meta_expressions.json; v2 meta_expressions_v2.json, or a release file "
                        "for an unannotated split)")
    return found[0] if found else None


class MeViSSplit(ReferringSplit):
    layout = "mevis"

    def __init__(self, split_dir: str | os.PathLike):
        split_dir = Path(split_dir)
        meta_path = mevis_meta_file(split_dir) or split_dir / "meta_expressions.json"
        self.meta_path = meta_path
        self.version = MEVIS_META_FILES[meta_path.name]
        videos = _parse_videos(load_json(meta_path), meta_path, "anno_id")
        self.mask_path = split_dir / "mask_dict.json"
        super().__init__(split_dir, videos, split_dir / "JPEGImages", self.mask_path.is_file())

    def _annotated_size(self, video: str) -> tuple[int, int] | None:
        """The size the first RLE of the video's objects records (each RLE is checked against it when decoded);
        None when every object is absent from every frame."""
        v = self.video(video)
        for anno_id in dict.fromkeys(a for e in v.expressions.values() for a in e.anno_ids):
            rles = self.mask_dict.get(anno_id)
            for r in rles if isinstance(rles, list) else ():
                if isinstance(r, dict) and isinstance(r.get("size"), list) and len(r["size"]) == 2:
                    try:
                        return int(r["size"][0]), int(r["size"][1])
                    except (TypeError, ValueError):
                        return None  # rle.parse names the malformed entry when it is decoded
        return None

    def frame_size(self, video: str) -> tuple[int, int]:
        try:
            return super().frame_size(video)
        except DataError as exc:
            if self.has_masks and self._annotated_size(video) is None:
                raise DataError(f"video {video!r} of {self.split_dir}: its size cannot be read from "
                                f"{self.mask_path.name} (every object is absent from every frame), nor from "
                                f"its frames: {exc}") from None
            raise

    @functools.cached_property
    def mask_dict(self) -> dict:
        self._require_masks()
        masks = load_json(self.mask_path)
        if not isinstance(masks, dict):
            raise DataError(f"{self.mask_path}: expected a mapping from anno_id to per-frame RLEs")
        return masks

    def _rles(self, video: Video, exp: Expression, anno_id: str) -> list:
        where = f"{self.mask_path}, anno_id {anno_id} (video {video.name!r}, expression {exp.exp_id!r})"
        try:
            rles = self.mask_dict[anno_id]
        except KeyError:
            raise DataError(f"{where}: this anno_id is absent from mask_dict.json") from None
        if not isinstance(rles, list) or len(rles) != len(video.frames):
            n = len(rles) if isinstance(rles, list) else "no list"
            raise DataError(f"{where}: expected a list of {len(video.frames)} RLEs (one per frame), got {n}")
        return rles

    def target_masks(self, video: str, exp_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        self._require_masks()
        v = self.video(video)
        exp = v.expressions[exp_id]
        indices = list(range(len(v))) if indices is None else list(indices)
        size = self.frame_size(video)
        target = None
        for anno_id in exp.anno_ids:
            rles = self._rles(v, exp, anno_id)
            where = f"{self.mask_path}, anno_id {anno_id} (video {video!r})"
            masks = rle.decode_many([rles[i] for i in indices], size, where)
            target = masks if target is None else target | masks  # keeps the decoder's memory layout
        return np.zeros((len(indices), *size), dtype=bool) if target is None else target

    def masks(self, video: str, anno_ids: Sequence[str], indices: Sequence[int]) -> np.ndarray:
        self._require_masks()
        v = self.video(video)
        size = self.frame_size(video)
        out = np.zeros((len(anno_ids), len(indices), *size), dtype=bool)
        for k, anno_id in enumerate(anno_ids):
            exp = next(e for e in v.expressions.values() if anno_id in e.anno_ids)
            rles = self._rles(v, exp, anno_id)
            where = f"{self.mask_path}, anno_id {anno_id} (video {video!r})"
            out[k] = rle.decode_many([rles[i] for i in indices], size, where)
        return out

    @functools.lru_cache(maxsize=64)
    def object_runs(self, video: str, anno_id: str) -> list[np.ndarray | None]:
        """One object's run lengths per frame (None where it is absent)."""
        v = self.video(video)
        exp = next(e for e in v.expressions.values() if anno_id in e.anno_ids)
        size = self.frame_size(video)
        where = f"{self.mask_path}, anno_id {anno_id} (video {video!r})"
        return [None if r is None else rle.parse(r, size, f"{where}, frame {t}")
                for t, r in enumerate(self._rles(v, exp, anno_id))]

    def frame_targets(self, video: str, exp_id: str) -> list[RunLengthMask]:
        self._require_masks()
        v = self.video(video)
        size = self.frame_size(video)
        objects = [self.object_runs(video, a) for a in v.expressions[exp_id].anno_ids]
        return [RunLengthMask([o[t] for o in objects if o[t] is not None], size) for t in range(len(v))]

    def check_masks(self) -> None:
        """Check that every expression's anno_ids exist with one entry per frame (before a long evaluation)."""
        for v in self.videos.values():
            for exp in v.expressions.values():
                for anno_id in exp.anno_ids:
                    self._rles(v, exp, anno_id)


class YTVOSSplit(ReferringSplit):
    layout = "ytvos"

    def __init__(self, split_dir: str | os.PathLike):
        split_dir = Path(split_dir)
        self.root = split_dir.parent
        meta_path = self.root / "meta_expressions" / split_dir.name / "meta_expressions.json"
        videos = _parse_videos(load_json(meta_path), meta_path, "obj_id")
        self.annotations_dir = split_dir / "Annotations"
        super().__init__(split_dir, videos, split_dir / "JPEGImages", self.annotations_dir.is_dir())

    def _annotated_size(self, video: str) -> tuple[int, int] | None:
        path = self.annotations_dir / video / f"{self.video(video).frames[0]}.png"
        return image_size(path) if path.is_file() else None

    def annotation(self, video: str, index: int) -> np.ndarray:
        path = self.annotations_dir / video / f"{self.video(video).frames[index]}.png"
        labels = read_label_png(path)
        size = self.frame_size(video)
        if labels.shape != size:
            raise DataError(f"{path}: annotation size {labels.shape} differs from the frame size {size}")
        return labels

    def target_masks(self, video: str, exp_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        self._require_masks()
        v = self.video(video)
        exp = v.expressions[exp_id]
        indices = list(range(len(v))) if indices is None else list(indices)
        try:
            ids = [int(a) for a in exp.anno_ids]
        except ValueError:
            raise DataError(f"video {video!r}, expression {exp_id!r}: obj_id {exp.anno_ids} is not an integer") from None
        target = [np.isin(self.annotation(video, i), ids) for i in indices]
        return np.stack(target) if target else np.zeros((0, *self.frame_size(video)), dtype=bool)

    def masks(self, video: str, anno_ids: Sequence[str], indices: Sequence[int]) -> np.ndarray:
        self._require_masks()
        try:
            ids = [int(a) for a in anno_ids]
        except ValueError:
            raise DataError(f"video {video!r}: obj_id {tuple(anno_ids)} is not an integer") from None
        labels = [self.annotation(video, i) for i in indices]
        out = np.zeros((len(ids), len(indices), *self.frame_size(video)), dtype=bool)
        for k, obj in enumerate(ids):
            for t, lab in enumerate(labels):
                out[k, t] = lab == obj
        return out


def open_split(split_dir: str | os.PathLike) -> ReferringSplit:
    """Open a split folder, recognising the MeViS or the Ref-YouTube-VOS / Ref-DAVIS17 layout, or a RefCOCO /
    RefCOCO+ / RefCOCOg annotation file ``COCO_ROOT/<dataset>/instances_<dataset>_<split>.json``
    (:mod:`rvos.data.refcoco`)."""
    split_dir = Path(split_dir)
    if split_dir.suffix.lower() == ".json":
        if not split_dir.is_file():
            raise DataError(f"annotation file {split_dir} does not exist (a RefCOCO split is "
                            "COCO_ROOT/<dataset>/instances_<dataset>_<split>.json)")
        from rvos.data.refcoco import RefCOCOSplit  # here: rvos.data.refcoco builds on this module

        return RefCOCOSplit(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"split folder {split_dir} does not exist")
    if mevis_meta_file(split_dir) is not None:
        return MeViSSplit(split_dir)
    if (split_dir.parent / "meta_expressions" / split_dir.name / "meta_expressions.json").is_file():
        return YTVOSSplit(split_dir)
    raise DataError(
        f"{split_dir} is not a dataset split: expected {split_dir / 'meta_expressions.json'} (MeViS layout; "
        "meta_expressions_v2.json for MeViS v2) or "
        f"{split_dir.parent / 'meta_expressions' / split_dir.name / 'meta_expressions.json'} (Ref-YouTube-VOS layout); "
        "a RefCOCO split is its annotation file, instances_<dataset>_<split>.json"
    )

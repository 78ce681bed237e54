"""RefCOCO, RefCOCO+ and RefCOCOg as one-frame videos, read from the COCO-style JSON that ReferFormer, SgMg and
MUTR pre-train on.

Layout, as ReferFormer's ``tools/data/convert_refexp_to_coco.py`` (also in SgMg) writes it from the REFER
annotations: ``COCO_ROOT/train2014/<file_name>`` (COCO 2014's train images, for every split) and
``COCO_ROOT/<dataset>/instances_<dataset>_<split>.json`` (dataset ``refcoco``, ``refcoco+`` or ``refcocog``; split
``train``, ``val``, ``testA``, ``testB``, or for refcocog ``test``). Every *sentence* about a referred object is one
entry of ``images`` (``id`` 1, 2, ... in the file, ``file_name``, ``height``, ``width``, ``caption`` = the sentence,
``dataset_name``, ``original_id`` = the COCO image id) with one entry of ``annotations`` whose ``image_id`` is that
``id`` (the object's COCO ``segmentation``, ``bbox`` x y w h, ``area``, ``iscrowd``, ``category_id``, ``id``, and
``original_id`` = the COCO annotation id).

Each image entry becomes a video of one frame, named by its ``id``, with one expression ``"0"`` (the caption) that
refers to the entry's annotations: ``anno_ids`` are their ``id`` (the mask keys), ``obj_ids`` their ``original_id``
(the COCO object, shared by every sentence about it) where the file records one. A training clip of it is that frame
(``data.num_frames`` copies of it), and goes through sampling, transforms and batching as a video clip does.

As SgMg's ``datasets/refexp.py`` (``ModulatedDetection`` with ``ConvertCocoPolysToMask``) reads the file:

* a mask is ``pycocotools.mask.frPyObjects(segmentation, height, width)``, decoded, united over its polygons;
* crowd annotations (``iscrowd`` present and not 0) are dropped, and so are annotations whose box, as x0 y0 x1 y1
  clamped to the image, has no width or no height;
* an entry left without an annotation is never trained on there (``__getitem__`` draws another entry at random
  instead); here it is not a video. What was dropped is counted in :attr:`RefCOCOSplit.dropped` and logged;
* images are read without applying their EXIF orientation, as PIL reads them there.

Where it differs: a compressed RLE (``counts`` a string), which ``frPyObjects`` rejects, is decoded as pycocotools'
``COCO.annToRLE`` decodes it (the converter's files hold none: their RLEs are uncompressed and belong to crowd
annotations); every RLE must have the entry's size; a frame whose size is not the entry's ``height`` x ``width`` is
a :class:`DataError` (the official reader decodes at the image's size). A malformed file (missing fields, an
annotation of an unknown entry, repeated ids) is a :class:`DataError` when the split is opened; a malformed
segmentation when its entry is read, or for the whole file by :meth:`RefCOCOSplit.check_masks`.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rvos.data import rle
from rvos.data.schema import Expression, Video
from rvos.data.splits import ReferringSplit, load_json
from rvos.errors import DataError

log = logging.getLogger(__name__)

DATASETS = ("refcoco", "refcoco+", "refcocog")
CONVERTER = "ReferFormer's tools/data/convert_refexp_to_coco.py"


def annotation_file(coco_root: str | os.PathLike, dataset: str, split: str) -> Path:
    """``COCO_ROOT/<dataset>/instances_<dataset>_<split>.json``, the file SgMg's ``build(dataset, split)`` reads."""
    return Path(coco_root) / dataset / f"instances_{dataset}_{split}.json"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _id(value: Any, where: str, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(f"{where}: '{key}' must be an integer id, got {str(value)[:80]!r}")
    return str(value)


def decode_segmentation(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """One annotation's mask (H, W) bool, as SgMg's ``convert_coco_poly_to_mask`` decodes it: polygons (a list of
    [x0, y0, x1, y1, ...]) or an uncompressed RLE through ``frPyObjects``, then the union over the polygons; a
    compressed RLE decoded directly (see the module documentation)."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, dict):
        return rle.decode(segmentation, (height, width), where)  # checks size and counts; pycocotools' result
    if not isinstance(segmentation, list) or not segmentation:
        raise DataError(f"{where}: 'segmentation' must be a non-empty list of polygons or an RLE "
                        f"{{'size': [h, w], 'counts': ...}}, got {str(segmentation)[:80]!r}")
    for k, polygon in enumerate(segmentation):
        if (not isinstance(polygon, list) or len(polygon) % 2 or len(polygon) < 4
                or not all(_is_number(v) for v in polygon)):
            raise DataError(f"{where}: polygon {k} must be a list of an even number (at least 4) of finite "
                            f"coordinates x0, y0, x1, y1, ..., got {str(polygon)[:80]!r}")
    try:
        rles = coco_mask.frPyObjects(segmentation, height, width)
        mask = coco_mask.decode(rles)
    except Exception as exc:  # what pycocotools cannot read, the official reader cannot either
        raise DataError(f"{where}: pycocotools cannot decode this segmentation ({exc})") from None
    return (mask[..., None] if mask.ndim < 3 else mask).any(axis=2)


def _box_is_empty(bbox: list, height: int, width: int) -> bool:
    """ConvertCocoPolysToMask's test: x y w h -> x0 y0 x1 y1, clamped to the image; empty without width or height."""
    x0, y0, w, h = (float(v) for v in bbox)
    x1, y1 = min(max(x0 + w, 0.0), width), min(max(y0 + h, 0.0), height)
    x0, y0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
    return not (x1 > x0 and y1 > y0)


class RefCOCOSplit(ReferringSplit):
    """One ``instances_<dataset>_<split>.json`` with its images (``images_dir``, by default ``COCO_ROOT/train2014``
    next to the ``<dataset>/`` folder holding the file)."""

    layout = "refcoco"
    exif_orientation = False

    def __init__(self, ann_file: str | os.PathLike, images_dir: str | os.PathLike | None = None):
        ann_file = Path(ann_file)
        self.images_dir = Path(images_dir) if images_dir is not None else ann_file.parent.parent / "train2014"
        data = load_json(ann_file)
        if not (isinstance(data, dict) and isinstance(data.get("images"), list)
                and isinstance(data.get("annotations"), list)):
            raise DataError(f"{ann_file}: expected a COCO-style object with 'images' and 'annotations' lists, the "
                            f"file {CONVERTER} writes")
        self.images = self._parse_images(data["images"], ann_file)  # video name -> image entry
        self.annotations: dict[str, dict] = {}  # annotation id -> annotation, the ones kept
        by_image: dict[str, list[str]] = {}
        seen: set[str] = set()
        self.dropped = {"crowd annotations": 0, "annotations with an empty box": 0, "entries without annotation": 0}
        for k, ann in enumerate(data["annotations"]):
            where = f"{ann_file}, annotations[{k}]"
            if not isinstance(ann, dict):
                raise DataError(f"{where}: expected an object with 'id', 'image_id', 'segmentation' and 'bbox'")
            for key in ("id", "image_id", "segmentation", "bbox"):
                if key not in ann:
                    raise DataError(f"{where}: no '{key}'; regenerate the file with {CONVERTER}")
            ann_id, image_id = _id(ann["id"], where, "id"), _id(ann["image_id"], where, "image_id")
            if ann_id in seen:
                raise DataError(f"{where}: annotation id {ann_id} appears twice; regenerate the file with {CONVERTER}")
            seen.add(ann_id)
            image = self.images.get(image_id)
            if image is None:
                raise DataError(f"{where}: image_id {image_id} is not the id of any entry of 'images'; the file is "
                                f"inconsistent, regenerate it with {CONVERTER}")
            bbox = ann["bbox"]
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                raise DataError(f"{where}: 'bbox' must be [x, y, width, height], got {str(bbox)[:80]!r}")
            if "iscrowd" in ann and ann["iscrowd"] != 0:
                self.dropped["crowd annotations"] += 1
            elif _box_is_empty(bbox, image["height"], image["width"]):
                self.dropped["annotations with an empty box"] += 1
            else:
                self.annotations[ann_id] = ann
                by_image.setdefault(image_id, []).append(ann_id)
        videos = {}
        for name, image in self.images.items():
            ann_ids = tuple(by_image.get(name, ()))
            if not ann_ids:
                self.dropped["entries without annotation"] += 1
                continue
            obj_ids = tuple(str(self.annotations[a].get("original_id", a)) for a in ann_ids)
            exp = Expression(exp_id="0", text=image["caption"], obj_ids=obj_ids, anno_ids=ann_ids)
            frame = os.path.splitext(os.path.basename(image["file_name"]))[0]
            videos[name] = Video(name=name, frames=(frame,), expressions={"0": exp})
        if any(self.dropped.values()):
            log.warning("%s: dropped %s, as SgMg's RefCOCO reader does", ann_file,
                        ", ".join(f"{n} {what}" for what, n in self.dropped.items() if n))
        super().__init__(ann_file, videos, self.images_dir, has_masks=True)
        stem = ann_file.stem
        self.name = stem[len("instances_"):] if stem.startswith("instances_") else stem  # e.g. refcoco+_train

    @staticmethod
    def _parse_images(images: list, ann_file: Path) -> dict[str, dict]:
        out = {}
        for k, image in enumerate(images):
            where = f"{ann_file}, images[{k}]"
            if not isinstance(image, dict):
                raise DataError(f"{where}: expected an object with 'id', 'file_name', 'height', 'width', 'caption'")
            for key in ("id", "file_name", "height", "width", "caption"):
                if key not in image:
                    hint = " (not a referring-expression file?)" if key == "caption" else ""
                    raise DataError(f"{where}: no '{key}'{hint}; regenerate the file with {CONVERTER}")
            name = _id(image["id"], where, "id")
            if name in out:
                raise DataError(f"{where}: image id {name} appears twice; regenerate the file with {CONVERTER}")
            if not isinstance(image["file_name"], str) or not image["file_name"]:
                raise DataError(f"{where}: 'file_name' must be an image file name, got {image['file_name']!r}")
            for key in ("height", "width"):
                value = image[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise DataError(f"{where}: '{key}' must be a positive integer, got {value!r}")
            if not isinstance(image["caption"], str):
                raise DataError(f"{where}: 'caption' must be the sentence, got {str(image['caption'])[:80]!r}")
            out[name] = image
        return out

    def _annotated_size(self, video: str) -> tuple[int, int]:
        image = self.images[self.video(video).name]
        return image["height"], image["width"]

    def frame_path(self, video: str, index: int) -> Path:
        self.video(video).frames[index]  # an IndexError beyond the one frame, as for any split
        return self.images_dir / self.images[video]["file_name"]

    def read_frames(self, video: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """The one frame (T, H, W, 3), read once however often ``indices`` repeats it."""
        indices = [0] if indices is None else list(indices)
        for i in set(indices):
            self.frame_path(video, i)
        path = self.frame_path(video, 0)
        if not path.is_file():
            raise DataError(f"image {path} (entry {video} of {self.split_dir}) does not exist: RefCOCO's images "
                            f"are COCO 2014's train images, expected in {self.images_dir}")
        return np.repeat(super().read_frames(video, [0]), len(indices), axis=0)

    def _decode(self, video: str, anno_id: str) -> np.ndarray:
        ann = self.annotations.get(anno_id)
        if ann is None or _id(ann["image_id"], "", "image_id") != video:
            raise DataError(f"{self.split_dir}: entry {video} has no annotation {anno_id}")
        height, width = self.frame_size(video)
        return decode_segmentation(ann["segmentation"], height, width,
                                   f"{self.split_dir}, annotation {anno_id} (entry {video})")

    def masks(self, video: str, anno_ids: Sequence[str], indices: Sequence[int]) -> np.ndarray:
        v = self.video(video)
        for i in indices:
            v.frames[i]  # one frame: index 0, maybe repeated
        out = np.zeros((len(anno_ids), len(indices), *self.frame_size(video)), dtype=bool)
        for k, anno_id in enumerate(anno_ids):
            out[k] = self._decode(video, anno_id)
        return out

    def target_masks(self, video: str, exp_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        indices = [0] if indices is None else list(indices)
        return self.masks(video, self.video(video).expressions[exp_id].anno_ids, indices).any(axis=0)

    def check_masks(self) -> None:
        """Decode every kept annotation, so that a malformed segmentation fails before a long run, not in it."""
        for name, video in self.videos.items():
            for anno_id in video.expressions["0"].anno_ids:
                self._decode(name, anno_id)

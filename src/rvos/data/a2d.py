"""A2D-Sentences: its official annotation files -> the COCO-format ground truth its evaluation reads.

Read as MTTR's ``create_gt_in_coco_format.py`` reads them (ReferFormer uses MTTR's file):

* ``Release/videoset.csv`` (no header): a video's id is the first column, its subset the ninth (0 train, 1 test);
  the videos listed in ``text_annotations/a2d_missed_videos.txt`` are left out, as in every A2D-Sentences paper;
* ``text_annotations/a2d_annotation.txt`` (``video_id,instance_id,query``): the sentences, in file order;
* ``text_annotations/a2d_annotation_with_instances/<video>/<frame>.h5``: per annotated frame the ids of its
  instances (``instance``), their masks (``reMask``, stored transposed; without the instance axis when the frame has
  one instance) and boxes (``reBBox``, x1 y1 x2 y2 per column).

Each (sentence, annotated frame where its instance appears) becomes an image ``v_<video>_f_<frame>_i_<instance>``
with one annotation (RLE mask, area, box as x y w h, category 1). A frame where the sentence's instance does not
appear is not an image: the protocol evaluates a sentence only where its object is annotated (MTTR follows
CMPC-V here).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from rvos.errors import DataError

SUBSETS = {"train": 0, "test": 1}


def image_id(video: str, frame: int, instance: int | str) -> str:
    return f"v_{video}_f_{frame}_i_{instance}"


def a2d_sentences(root: str | os.PathLike, subset: str = "test") -> list[tuple[str, int, str]]:
    """The (video, instance id, sentence) of a subset, in the order of ``a2d_annotation.txt``."""
    root = Path(root)
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {sorted(SUBSETS)}, got {subset!r}")
    videoset, missed = root / "Release" / "videoset.csv", root / "text_annotations" / "a2d_missed_videos.txt"
    annotations = root / "text_annotations" / "a2d_annotation.txt"
    for path in (videoset, missed, annotations):
        if not path.is_file():
            raise DataError(f"{path} does not exist: ROOT must hold A2D-Sentences' Release/ and text_annotations/")
    skip = set(missed.read_text().split())
    with open(videoset, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    bad = [i + 1 for i, r in enumerate(rows) if len(r) < 9]
    if bad:
        raise DataError(f"{videoset}: lines {bad[:5]} have fewer than the 9 columns of A2D's videoset.csv")
    used = {r[0] for r in rows if r[0] not in skip and int(r[8]) == SUBSETS[subset]}
    with open(annotations, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"video_id", "instance_id", "query"} <= set(reader.fieldnames):
            raise DataError(f"{annotations}: expected the header video_id,instance_id,query")
        return [(r["video_id"], int(r["instance_id"]), r["query"]) for r in reader if r["video_id"] in used]


def a2d_coco_ground_truth(root: str | os.PathLike, subset: str = "test") -> dict:
    """The COCO-format ground truth (``images``, ``annotations``, ``categories``) of an A2D-Sentences subset."""
    import h5py
    from pycocotools import mask as mask_utils

    root = Path(root)
    masks_dir = root / "text_annotations" / "a2d_annotation_with_instances"
    images, annotations, seen = [], [], set()
    for video, instance, _ in a2d_sentences(root, subset):
        files = sorted((masks_dir / video).glob("*.h5"))
        if not files:
            raise DataError(f"{masks_dir / video} holds no .h5 annotation: the A2D-Sentences annotations are incomplete")
        for path in files:
            with h5py.File(path, "r") as f:
                instances = [int(i) for i in np.asarray(f["instance"]).reshape(-1)]
                if instance not in instances:
                    continue  # the sentence's object is not annotated in this frame
                k = instances.index(instance)
                mask = (np.asarray(f["reMask"])[k] if len(instances) > 1 else np.asarray(f["reMask"])).T
                box = np.asarray(f["reBBox"])[:, k] if len(instances) > 1 else np.asarray(f["reBBox"]).reshape(-1)
            iid = image_id(video, int(path.stem), instance)
            if iid in seen:
                raise DataError(f"{path}: image {iid} appears twice (two sentences for one instance share it)")
            seen.add(iid)
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            images.append({"id": iid, "height": int(mask.shape[0]), "width": int(mask.shape[1])})
            annotations.append({"id": len(annotations) + 1, "image_id": iid, "category_id": 1, "segmentation": rle,
                                "area": float(mask_utils.area(rle)),
                                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                                "iscrowd": 0})
    return {"categories": [{"id": 1, "name": "dummy_class"}], "images": images, "annotations": annotations}

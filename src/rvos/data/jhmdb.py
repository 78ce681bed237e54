"""JHMDB-Sentences: its official files -> the samples its protocol evaluates and their COCO-format ground truth.

Read as MTTR's ``jhmdb_sentences_dataset.py`` and ``create_gt_in_coco_format.py`` read them (ReferFormer reads the
same samples file and ground truth):

* ``jhmdb_annotation.txt`` (CSV, header ``video_id,query``): one sentence per video (928 in the release);
* ``Rename_Images/<action>/<video>/<frame:05d>.png``: the frames, numbered from 1;
* ``puppet_mask/<action>/<video>/puppet_mask.mat``: ``part_mask``, the actor's masks as H x W x T; the last frames
  of a video may have no mask and are never evaluated;
* ``jhmdb_sentences_samples_metadata.json``: the frames the protocol evaluates. JHMDB-Sentences has no training
  split (models trained on A2D-Sentences are evaluated on it), and MTTR drew 3 frames per video once
  (``random.sample`` of the frames that have a mask) and published the draw. Every later paper evaluates that file
  (MTTR's config loads it, ``generate_new_samples_metadata: false``; ReferFormer reads it from the dataset folder),
  so it is the default here too. Each entry is ``[video, frame path, mask path, frames with a mask, sentence]``,
  paths written as ``./jhmdb_sentences/...``; they are resolved inside the given root.

Each sample becomes an image ``v_<video>_f_<frame>`` holding one annotation (the frame's RLE mask, its area,
category 1, no box), as MTTR writes it. ``every_frame=True`` evaluates every frame that has a mask instead of the
published draw; its numbers are not comparable with the papers'.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from rvos.errors import DataError

SAMPLES_FILE = "jhmdb_sentences_samples_metadata.json"


@dataclass(frozen=True)
class JhmdbSample:
    """One evaluated frame: ``frame`` is 1-based (``<frame:05d>.png``); ``num_frames`` counts the frames with a
    mask, the range a window around ``frame`` is clamped to."""

    video: str
    frame: int
    sentence: str
    frames_dir: Path
    masks_path: Path
    num_frames: int

    @property
    def image_id(self) -> str:
        return image_id(self.video, self.frame)

    def frame_path(self, frame: int) -> Path:
        return self.frames_dir / f"{frame:05d}.png"

    def window(self, size: int) -> list[int]:
        """The ``size`` frame numbers centred on this sample's frame, edge frames repeated, as MTTR's and
        ReferFormer's loaders take them."""
        start = self.frame - size // 2
        return [min(max(i, 1), self.num_frames) for i in range(start, start + size)]


def image_id(video: str, frame: int) -> str:
    return f"v_{video}_f_{frame}"


def read_masks(path: str | os.PathLike) -> np.ndarray:
    """A video's puppet masks as T x H x W uint8."""
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the puppet mask file ({exc})") from None
    if "part_mask" not in data or np.ndim(data["part_mask"]) != 3:
        raise DataError(f"{path}: expected an H x W x T array 'part_mask', as JHMDB's puppet_mask.mat holds")
    return np.ascontiguousarray(data["part_mask"].transpose(2, 0, 1)).astype(np.uint8)


def _video_folders(root: Path, folder: str, file: str | None = None) -> dict[str, Path]:
    """``{video: path}`` of ``root/folder/<action>/<video>`` (or of the ``file`` inside it); a video under two
    actions is an error."""
    found: dict[str, Path] = {}
    for video_dir in sorted(p for p in (root / folder).glob("*/*") if p.is_dir()):
        if file is not None and not (video_dir / file).is_file():
            continue
        if video_dir.name in found:
            raise DataError(f"video {video_dir.name} is under two actions in {root / folder}")
        found[video_dir.name] = video_dir / file if file else video_dir
    return found


def jhmdb_sentences(root: str | os.PathLike) -> list[tuple[str, str]]:
    """The (video, sentence) pairs of ``jhmdb_annotation.txt``, in file order."""
    path = Path(root) / "jhmdb_annotation.txt"
    if not path.is_file():
        raise DataError(f"{path} does not exist: ROOT must hold JHMDB-Sentences' jhmdb_annotation.txt, "
                        "Rename_Images/ and puppet_mask/")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"video_id", "query"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected the header video_id,query")
        return [(r["video_id"], r["query"]) for r in reader]


def _inside(root: Path, written: str, folder: str) -> Path:
    """A samples-file path (``./jhmdb_sentences/<folder>/...``) resolved inside ``root``."""
    parts = PurePosixPath(written).parts
    if folder not in parts:
        raise DataError(f"{written}: a samples-file path must lie under {folder}/")
    return root.joinpath(*parts[parts.index(folder):])


def jhmdb_samples(root: str | os.PathLike, samples: str | os.PathLike | None = None,
                  every_frame: bool = False) -> list[JhmdbSample]:
    """The evaluated samples: the published draw (``samples``, default ``ROOT/jhmdb_sentences_samples_metadata
    .json``), or with ``every_frame`` each sentence on every frame that has a mask."""
    root = Path(root)
    sentences = jhmdb_sentences(root)
    if every_frame:
        if samples is not None:
            raise ValueError("give a samples file or every_frame, not both")
        frames = _video_folders(root, "Rename_Images")
        masks = _video_folders(root, "puppet_mask", "puppet_mask.mat")
        out = []
        for video, sentence in sentences:
            if video not in frames or video not in masks:
                where = "Rename_Images" if video not in frames else "puppet_mask"
                raise DataError(f"video {video} of jhmdb_annotation.txt has no folder in {root / where}/<action>/")
            n_frames = len(list(frames[video].glob("*.png")))
            n = min(n_frames, len(read_masks(masks[video])))  # frames past the last mask are not evaluated
            out += [JhmdbSample(video, i, sentence, frames[video], masks[video], n) for i in range(1, n + 1)]
        return out

    path = Path(samples) if samples is not None else root / SAMPLES_FILE
    if not path.is_file():
        raise DataError(
            f"{path} does not exist. The published JHMDB-Sentences protocol evaluates the 3 frames per video MTTR "
            f"drew once: copy MTTR's datasets/jhmdb_sentences/{SAMPLES_FILE} into {root} or pass its path, or "
            "evaluate every frame that has a mask (every_frame / --every-frame; not comparable with the papers)")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    known = dict(sentences)
    out = []
    for i, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 5):
            raise DataError(f"{path}: entry {i} is not [video, frame path, mask path, frames, sentence]")
        video, frame_path, masks_path, num_frames, sentence = entry
        if known.get(video) != sentence:
            raise DataError(f"{path}: entry {i} ({video}, {sentence!r}) is not a sentence of "
                            f"{root / 'jhmdb_annotation.txt'}")
        frame_file = _inside(root, frame_path, "Rename_Images")
        masks_file = _inside(root, masks_path, "puppet_mask")
        if not masks_file.is_file():
            raise DataError(f"{masks_file} does not exist (entry {i} of {path})")
        try:
            frame, num_frames = int(PurePosixPath(frame_path).stem), int(num_frames)
        except (TypeError, ValueError):
            raise DataError(f"{path}: entry {i} names frame {frame_path!r} and {num_frames!r} frames; expected a "
                            "<frame:05d>.png path and a number") from None
        if not 1 <= frame <= num_frames:
            raise DataError(f"{path}: entry {i} evaluates frame {frame} of {video}, outside its {num_frames} frames")
        out.append(JhmdbSample(video, frame, sentence, frame_file.parent, masks_file, num_frames))
    return out


def jhmdb_coco_ground_truth(root: str | os.PathLike, samples: str | os.PathLike | None = None,
                            every_frame: bool = False) -> dict:
    """The COCO-format ground truth (``images``, ``annotations``, ``categories``) of the evaluated samples."""
    from pycocotools import mask as mask_utils

    images, annotations, seen, cache = [], [], set(), {}
    for sample in jhmdb_samples(root, samples, every_frame):
        if sample.masks_path not in cache:
            cache = {sample.masks_path: read_masks(sample.masks_path)}  # samples come video by video
        masks = cache[sample.masks_path]
        if sample.frame > len(masks):
            raise DataError(f"{sample.masks_path} has {len(masks)} masks; frame {sample.frame} has none")
        mask = masks[sample.frame - 1]
        if sample.image_id in seen:
            raise DataError(f"image {sample.image_id} appears twice: a frame of a video is evaluated once")
        seen.add(sample.image_id)
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        images.append({"id": sample.image_id, "height": int(mask.shape[0]), "width": int(mask.shape[1])})
        annotations.append({"id": len(annotations) + 1, "image_id": sample.image_id, "category_id": 1,
                            "segmentation": rle, "area": float(mask_utils.area(rle)), "iscrowd": 0})
    return {"categories": [{"id": 1, "name": "dummy_class"}], "images": images, "annotations": annotations}

"""The Ref-DAVIS17 protocol: each of the four annotators' expression sets predicted and evaluated with the DAVIS 2017
code, then the four tables averaged, as ReferFormer does (``inference_davis.py`` + ``eval_davis.py`` four times).

Ref-DAVIS17 has four expressions per object: annotator 1 first-frame, annotator 1 full-video, annotator 2
first-frame, annotator 2 full-video. ReferFormer's converter (``tools/data/convert_davis_to_ytvos.py``) stores them
in this order per object, objects in turn, with expression ids 0, 1, 2, ...; so in a video the expression at
position ``4 * o + k`` (ids sorted as numbers) is object ``o``'s by annotator set ``k``. For each set ``k`` the
objects' masks of a frame are merged into one label image (the object's id where its mask is on) and written to
``OUT/anno_<k>/<video>/<frame>.png``; :func:`rvos.eval.davis.evaluate_davis` scores it against the DAVIS folder.

ReferFormer's ``eval_davis.py`` runs the ``unsupervised`` task by default (the script does not pass ``--task``), so
that is the default here too; ``semi-supervised`` needs the label to be the DAVIS object id, which it is.
Where two objects' masks overlap, ReferFormer keeps the one with the higher mask probability; binary PNG
predictions do not carry it, so here the later object in the expression order wins (the overlap is logged).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rvos.data.frames import read_label_png
from rvos.data.splits import open_split
from rvos.errors import DataError, EvalError
from rvos.eval.davis import MEASURES, DavisResult, evaluate_davis
from rvos.fileio import atomic_folder

log = logging.getLogger(__name__)

ANNOTATORS = 4
PALETTE = [0, 0, 0] + [c for i in range(1, 256) for c in ((37 * i) % 256, (97 * i) % 256, (157 * i) % 256)]


@dataclass
class RefDavisResult:
    task: str
    per_annotator: list[DavisResult]

    def mean(self) -> dict[str, float]:
        return {m: float(np.mean([r.table[m] for r in self.per_annotator])) for m in MEASURES}

    def to_json(self) -> dict:
        return {"benchmark": "Ref-DAVIS17", "task": self.task, **self.mean(),
                "per_annotator": {f"anno_{k}": r.to_json() for k, r in enumerate(self.per_annotator)}}


def _write_labels(path: Path, labels: np.ndarray) -> None:
    """A palette PNG whose value is the object id, as DAVIS stores results."""
    from PIL import Image

    image = Image.fromarray(labels, mode="P")
    image.putpalette(PALETTE)
    image.save(path)


def _expression_sets(video) -> list[list[tuple[str, int]]]:
    """Per annotator set, the (exp_id, object id) of each object of the video."""
    exp_ids = sorted(video.expressions, key=lambda e: int(e) if e.isdigit() else e)
    if len(exp_ids) % ANNOTATORS:
        raise DataError(f"video {video.name} has {len(exp_ids)} expressions, not 4 per object: is this the Ref-DAVIS17 "
                        "split as ReferFormer's convert_davis_to_ytvos.py writes it?")
    sets: list[list[tuple[str, int]]] = [[] for _ in range(ANNOTATORS)]
    for i, exp_id in enumerate(exp_ids):
        obj_ids = video.expressions[exp_id].obj_ids
        if len(obj_ids) != 1 or not str(obj_ids[0]).isdigit():
            raise DataError(f"video {video.name}, expression {exp_id}: Ref-DAVIS17 expressions refer to one object "
                            f"(a number), not {obj_ids}")
        sets[i % ANNOTATORS].append((exp_id, int(obj_ids[0])))
    return sets


def merge_annotator_sets(split_dir: str | os.PathLike, pred: str | os.PathLike, out: str | os.PathLike) -> None:
    """Per-expression masks ``PRED/<video>/<exp_id>/<frame>.png`` -> ``OUT/anno_<k>/<video>/<frame>.png`` labels."""
    split, pred, out = open_split(split_dir), Path(pred), Path(out)
    missing = []
    for name in split.videos:
        video = split.video(name)
        for k, objects in enumerate(_expression_sets(video)):
            with atomic_folder(out / f"anno_{k}" / name) as tmp:
                for frame in video.frames:
                    labels = None
                    for exp_id, obj_id in objects:
                        path = pred / name / exp_id / f"{frame}.png"
                        if not path.is_file():
                            missing.append(str(path))
                            continue
                        mask = read_label_png(path) > 0
                        if labels is None:
                            labels = np.zeros(mask.shape, np.uint8)
                        elif mask.shape != labels.shape:
                            raise EvalError(f"{path} is {mask.shape[1]}x{mask.shape[0]}, the other expressions' "
                                            f"masks of this frame {labels.shape[1]}x{labels.shape[0]}")
                        if np.any(labels[mask]):
                            log.info("%s/%s anno_%d: object %d overlaps another; it is kept", name, frame, k, obj_id)
                        labels[mask] = obj_id
                    if labels is not None:
                        _write_labels(tmp / f"{frame}.png", labels)
    if missing:
        raise EvalError(f"{len(missing)} expression masks are missing (first: {missing[0]}); predict every "
                        "expression with rvos infer --split-dir SPLIT --out PRED")


def evaluate_refdavis(split_dir: str | os.PathLike, pred: str | os.PathLike, davis_root: str | os.PathLike,
                      out: str | os.PathLike, task: str = "unsupervised", subset: str = "val") -> RefDavisResult:
    """Merge each annotator set's predictions into DAVIS results under ``out``, score each, and keep the four."""
    merge_annotator_sets(split_dir, pred, out)
    return RefDavisResult(task, [evaluate_davis(davis_root, Path(out) / f"anno_{k}", task, subset=subset)
                                 for k in range(ANNOTATORS)])

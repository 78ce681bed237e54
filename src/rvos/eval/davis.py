"""The DAVIS 2017 evaluation, semi-supervised and unsupervised: the table of the official davis2017-evaluation code
(``J&F-Mean``, ``J-Mean``, ``J-Recall``, ``J-Decay``, ``F-Mean``, ``F-Recall``, ``F-Decay``) and J and F per object.

Layout: ``ROOT/ImageSets/2017/<set>.txt`` (the sequences; ``ImageSets/2019`` for the unsupervised test sets),
``ROOT/Annotations/480p/<seq>/<frame>.png`` (semi-supervised) or ``ROOT/Annotations_unsupervised/480p/...``
(unsupervised): palette PNGs whose value is the object id, 255 marking void pixels. Results:
``RESULTS/<seq>/<frame>.png`` for every annotated frame, value = object id (semi-supervised) or proposal id
(unsupervised). The frames are those of the annotations: the JPEG frames are never needed.

The rules, as the official code applies them:

* A sequence's objects are the ids 1..N, N the largest id in its first annotation; void pixels are background.
* Semi-supervised: the first and the last frames are not scored and void pixels count as background. A result id
  above N is an error; an object never predicted scores as an empty mask.
* Unsupervised: every frame is scored, without its void pixels (they are removed from both masks). The proposals
  (ids 1..the largest in the results, at most 20) are matched one to one to the objects, maximising the mean over
  frames of (J + F) / 2 (Hungarian); objects left without a proposal score as empty masks. The official code lists
  the matched pairs in proposal order and names them ``<seq>_1``, ``<seq>_2``, ...; the per-object entries here do
  the same (so ``<seq>_k`` is the k-th matched pair, not always object k); the means do not depend on it.
* Per object, over its scored frames: the mean (M), the fraction of frames above 0.5 (recall, R) and the decay
  (D): the mean over the first quarter of the frames minus the mean over the last quarter, the quarters cut at
  ``round(linspace(1, n, 5)) - 1``, each holding its right end. The cut indices are 8-bit, as in the official code
  (they wrap for sequences over 255 frames; DAVIS's longest has 104).
* The table: means over every object of every sequence; ``J&F-Mean = (J-Mean + F-Mean) / 2``.

J and F are :mod:`rvos.eval.metrics`, equal to the official definitions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from rvos.data.frames import read_label_png
from rvos.errors import DataError, EvalError
from rvos.eval.metrics import bound_radius, disk, frame_scores

TASKS = ("semi-supervised", "unsupervised")
VOID = 255
MAX_PROPOSALS = 20
MEASURES = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


@dataclass
class DavisResult:
    task: str
    table: dict[str, float]
    per_object: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"benchmark": "DAVIS-2017", "task": self.task, **self.table, "num_objects": len(self.per_object),
                "per_object": self.per_object}


def statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame J or F (see the module docstring)."""
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > 0.5))
    cuts = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.uint8)
    quarters = [values[cuts[i]:cuts[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(quarters[0]) - np.nanmean(quarters[3]))
    return mean, recall, decay


def _sequences(root: Path, task: str, subset: str) -> list[str]:
    year = "2019" if task == "unsupervised" and subset in ("test-dev", "test-challenge") else "2017"
    path = root / "ImageSets" / year / f"{subset}.txt"
    if not path.is_file():
        raise DataError(f"{path} does not exist: {root} is not a DAVIS folder with the {subset!r} set "
                        "(expected ImageSets/, Annotations/480p/ or Annotations_unsupervised/480p/)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_stack(paths: list[Path]) -> np.ndarray:
    labels = [read_label_png(p) for p in paths]
    for p, lab in zip(paths, labels):
        if lab.shape != labels[0].shape:
            raise DataError(f"{p}: size {lab.shape} differs from the sequence's first frame {labels[0].shape}")
    return np.stack(labels)


def _scores(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(T, 2) J and F per frame of bool stacks (T, H, W)."""
    return np.array([frame_scores(g, p, kernel) for g, p in zip(gt, pred)]).reshape(-1, 2)


def scored_frames(task: str, num_frames: int) -> slice:
    return slice(1, num_frames - 1) if task == "semi-supervised" else slice(0, num_frames)


def evaluate_sequence(task: str, gt_labels: np.ndarray, pred_labels: np.ndarray,
                      void: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-object J and F over the scored frames, (N, T') each, of one sequence: the ground-truth labels of every
    frame (T, H, W) with void pixels set to 0, the results' labels of the scored frames only (T', H, W)."""
    n_objects = int(gt_labels[0].max())
    n_results = int(pred_labels.max()) if pred_labels.size else 0
    kernel = disk(bound_radius(*gt_labels.shape[1:]))
    gt_labels = gt_labels[scored_frames(task, len(gt_labels))]
    if task == "semi-supervised":
        if n_results > n_objects:
            raise EvalError(f"result id {n_results} is above the sequence's {n_objects} objects")
        scores = np.stack([_scores(gt_labels == k, pred_labels == k, kernel) for k in range(1, n_objects + 1)])
        return scores[..., 0], scores[..., 1]
    if n_results > MAX_PROPOSALS:
        raise EvalError(f"proposal id {n_results} is above the {MAX_PROPOSALS} proposals allowed")
    keep = ~void if void is not None else np.ones(gt_labels.shape, bool)
    n_proposals = max(n_results, n_objects)
    scores = np.stack([np.stack([_scores((gt_labels == i) & keep, (pred_labels == p) & keep, kernel)
                                 for i in range(1, n_objects + 1)]) for p in range(1, n_proposals + 1)])
    j, f = scores[..., 0], scores[..., 1]  # (proposals, objects, T)
    rows, cols = linear_sum_assignment(-((j.mean(axis=2) + f.mean(axis=2)) / 2))
    return j[rows, cols], f[rows, cols]


def evaluate_davis(root: str | os.PathLike, results: str | os.PathLike, task: str = "semi-supervised",
                   subset: str = "val", resolution: str = "480p") -> DavisResult:
    if task not in TASKS:
        raise EvalError(f"unknown DAVIS task {task!r}: choose {' or '.join(TASKS)}")
    root, results = Path(root), Path(results)
    if not results.is_dir():
        raise EvalError(f"results folder {results} does not exist")
    annotations = root / ("Annotations" if task == "semi-supervised" else "Annotations_unsupervised") / resolution
    stats: dict[str, list[tuple[float, float, float]]] = {"J": [], "F": []}
    per_object: dict[str, dict[str, float]] = {}
    problems: list[str] = []
    for seq in _sequences(root, task, subset):
        gt_paths = sorted((annotations / seq).glob("*.png"))
        if not gt_paths:
            raise DataError(f"{annotations / seq} holds no annotation PNGs (sequence {seq!r} of {subset}.txt)")
        if task == "semi-supervised" and len(gt_paths) < 3:
            raise DataError(f"{annotations / seq}: {len(gt_paths)} frames; the semi-supervised task scores all but "
                            "the first and the last, so it needs 3 or more")
        pred_paths = [results / seq / p.name for p in gt_paths[scored_frames(task, len(gt_paths))]]
        missing = [p.name for p in pred_paths if not p.is_file()]
        if missing:
            problems.append(f"  {seq}: {len(missing)} of {len(pred_paths)} frames missing (first: {missing[0]})")
            continue
        gt = _read_stack(gt_paths)
        pred = _read_stack(pred_paths)
        if pred.shape[1:] != gt.shape[1:]:
            problems.append(f"  {seq}: results of size {pred.shape[1]}x{pred.shape[2]}, expected "
                            f"{gt.shape[1]}x{gt.shape[2]}")
            continue
        void = gt == VOID
        gt[void] = 0
        try:
            j, f = evaluate_sequence(task, gt, pred, void if task == "unsupervised" else None)
        except EvalError as exc:
            problems.append(f"  {seq}: {exc}")
            continue
        for k in range(len(j)):
            sj, sf = statistics(j[k]), statistics(f[k])
            stats["J"].append(sj)
            stats["F"].append(sf)
            per_object[f"{seq}_{k + 1}"] = {"J-Mean": sj[0], "F-Mean": sf[0]}
    if problems:
        raise EvalError(f"{len(problems)} sequences of {results} cannot be evaluated:\n" + "\n".join(problems))
    if not per_object:
        raise EvalError(f"{root}: no object to evaluate in the {subset!r} set")
    jm, jr, jd = np.mean(stats["J"], axis=0)
    fm, fr, fd = np.mean(stats["F"], axis=0)
    table = dict(zip(MEASURES, (float((jm + fm) / 2), *map(float, (jm, jr, jd, fm, fr, fd)))))
    return DavisResult(task, table, per_object)

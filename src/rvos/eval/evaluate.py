"""Evaluate predictions against an annotated split: J, F and J&F per expression, overall and by expression kind.

Predictions are ``PRED_DIR/<video>/<exp_id>/<frame>.png``, non-zero = foreground (palette PNGs by index). Per
expression, J and F are the means over all the video's frames; the split's J and F are the means over
expressions; J&F = (J + F) / 2, as the MeViS and DAVIS evaluations define them.

Unlike the official MeViS script, which silently leaves an expression out of the mean when one of its PNGs is
missing or of the wrong size, nothing is dropped: by default missing or wrong-size predictions are one error that
summarises them per video (:class:`rvos.eval.problems.IncompletePredictions`, which lists every file); with
``allow_missing`` such frames score J = F = 0 and are listed in the result.

No-target expressions (MeViS v2: an annotated expression without ``anno_id``) have an empty target in every frame.
J&F scores them as the official MeViS code scores any empty target: a frame scores J = F = 1 when its prediction
is empty too, and J = F = 0 otherwise; they enter the means like every other expression. MeViS v2 also reports
N-acc and T-acc (its challenge's final score is (J&F + N-acc + T-acc) / 3, which every published leaderboard row
satisfies). Its scoring program is not public, so they are computed with the definitions of GRES, where the two
metrics come from, taken per expression, the unit MeViS scores: an expression is predicted to have no target when
its prediction is empty in every frame; N-acc = the share of no-target expressions predicted so (TN / (TN + FP)),
T-acc = the share of target expressions predicted otherwise (TP / (TP + FN)). The results label them with that
provenance.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvos.data.frames import read_label_png
from rvos.data.masks import DenseMask
from rvos.data.splits import MeViSSplit, ReferringSplit, open_split
from rvos.errors import DataError, EvalError
from rvos.eval.metrics import bound_radius, disk, frame_scores
from rvos.eval.problems import IncompletePredictions, Problem

log = logging.getLogger(__name__)


NO_TARGET_NOTE = ("N-acc and T-acc as GRES defines them, per expression (no target predicted = an empty mask in "
                  "every frame); MeViS v2's scoring program is not public. Final = (J&F + N-acc + T-acc) / 3.")


@dataclass
class EvalResult:
    J: float
    F: float
    per_expression: dict[str, list[float]]
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    release: str | None = None  # "MeViS v1" or "MeViS v2": the expression file a MeViS-layout split was read from
    no_target: dict | None = None  # N-acc, T-acc, Final and J&F by target / no-target, where the split has both

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2

    def to_json(self) -> dict:
        out = {"J&F": self.JF, "J": self.J, "F": self.F, "num_expressions": len(self.per_expression)}
        if self.release:
            out["release"] = self.release
        if self.no_target:
            out.update(self.no_target)
        out.update({"by_kind": self.by_kind, "missing": self.missing, "wrong_size": self.wrong_size,
                    "per_expression": self.per_expression})
        return out


def expression_key(video: str, exp_id: str) -> str:
    return f"{video}_{exp_id}"


# The split a worker process scores against. A forked worker inherits the parent's (with its mask_dict already
# parsed); a spawned one opens the split again.
_SPLIT: ReferringSplit | None = None


def _init_worker(split_dir: str) -> None:
    global _SPLIT
    if _SPLIT is None or str(_SPLIT.split_dir) != split_dir:
        _SPLIT = open_split(split_dir)


def _read_prediction(path: str, size: tuple[int, int]) -> tuple[DenseMask | None, str | None]:
    """(mask, problem): problem says why the PNG cannot be scored (missing, unreadable, wrong size)."""
    if not os.path.isfile(path):
        return None, "missing"
    try:
        labels = read_label_png(path)
    except DataError as exc:
        return None, f"unreadable ({exc})"
    if labels.shape != size:
        return None, f"size {labels.shape[0]}x{labels.shape[1]}, expected {size[0]}x{size[1]}"
    return DenseMask(labels), None


def score_video(video: str, pred_dir: str) -> list[tuple[str, float, float, bool, list[Problem]]]:
    """[(exp_id, J, F, whether any readable frame's prediction has foreground, problems)] for every expression of
    one video; a problem frame scores J = F = 0."""
    split = _SPLIT
    assert split is not None
    v = split.video(video)
    size = split.frame_size(video)
    kernel = disk(bound_radius(*size))
    out = []
    for exp_id in v.expressions:
        targets = split.frame_targets(video, exp_id)
        scores = np.zeros((len(v), 2))
        problems = []
        predicted = False
        for t, frame in enumerate(v.frames):
            pred, problem = _read_prediction(os.path.join(pred_dir, video, exp_id, f"{frame}.png"), size)
            if problem:
                problems.append(Problem(video, exp_id, frame, problem))
            if pred is not None:  # an unscorable frame keeps J = F = 0
                scores[t] = frame_scores(targets[t], pred, kernel)
                predicted |= pred.box is not None
        j, f = scores.mean(axis=0)
        out.append((exp_id, float(j), float(f), predicted, problems))
    return out


def _score_video_star(args):
    return args[0], score_video(*args)


def _by_kind(split: ReferringSplit, per_expression: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    kinds: dict[str, list[list[float]]] = {}
    for v in split.videos.values():
        for exp in v.expressions.values():
            key = expression_key(v.name, exp.exp_id)
            if exp.kind and key in per_expression:
                kinds.setdefault(exp.kind, []).append(per_expression[key])
    return {kind: _mean_jf(scores) for kind, scores in sorted(kinds.items())}


def _mean_jf(scores: list[list[float]]) -> dict[str, float]:
    j, f = np.mean(scores, axis=0)
    return {"J&F": float((j + f) / 2), "J": float(j), "F": float(f), "count": len(scores)}


def _no_target_scores(split: ReferringSplit, per_expression: dict[str, list[float]],
                      predicted: dict[str, bool | None], jf: float) -> dict | None:
    """N-acc, T-acc, Final and J&F by target / no-target (module docstring), or None without no-target
    expressions. ``predicted`` is None for an expression with a missing or unreadable frame: wrong either way."""
    no_target = {expression_key(v.name, e.exp_id) for v in split.videos.values() for e in v.expressions.values()
                 if not e.anno_ids}
    no_target &= set(per_expression)
    if not no_target:
        return None
    target = [k for k in per_expression if k not in no_target]
    n_acc = sum(predicted[k] is False for k in no_target) / len(no_target)
    out = {"N-acc": n_acc, "T-acc": None, "Final": None}
    if target:
        out["T-acc"] = sum(predicted[k] is True for k in target) / len(target)
        out["Final"] = (jf + out["N-acc"] + out["T-acc"]) / 3
    out["by_target"] = {"no-target": _mean_jf([per_expression[k] for k in per_expression if k in no_target])}
    if target:
        out["by_target"]["target"] = _mean_jf([per_expression[k] for k in target])
    out["no_target_note"] = NO_TARGET_NOTE
    return out


def evaluate(split_dir: str | os.PathLike, pred_dir: str | os.PathLike, workers: int = 1,
             allow_missing: bool = False, videos: list[str] | None = None, progress: bool = True) -> EvalResult:
    """Score ``pred_dir`` against the split's ground truth; see the module docstring for the rules."""
    global _SPLIT
    split = open_split(split_dir)
    if not split.has_masks:
        raise EvalError(f"{split.split_dir} has no ground-truth masks (like MeViS 'valid'): it cannot be evaluated "
                        "here; use `rvos submit` to package predictions for the benchmark server")
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EvalError(f"prediction folder {pred_dir} does not exist")
    if isinstance(split, MeViSSplit):
        split.check_masks()  # parse mask_dict.json before forking, and fail early on a bad anno_id
    names = list(split.videos) if videos is None else videos
    if not any(split.video(n).expressions for n in names):
        raise EvalError(f"{split.split_dir} has no expressions to evaluate")
    _SPLIT = split
    tasks = [(name, str(pred_dir)) for name in names]
    results: dict[str, list] = {}
    bar = tqdm(total=len(tasks), desc="eval", unit="video", disable=not progress, leave=False)
    if workers <= 1:
        for task in tasks:
            name, res = _score_video_star(task)
            results[name] = res
            bar.update()
    else:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        with ctx.Pool(workers, initializer=_init_worker, initargs=(str(split.split_dir),)) as pool:
            for name, res in pool.imap_unordered(_score_video_star, tasks, chunksize=1):
                results[name] = res
                bar.update()
    bar.close()
    per_expression: dict[str, list[float]] = {}
    predicted: dict[str, bool | None] = {}
    problems: list[Problem] = []
    for name in names:  # file order, whatever order the workers finished in
        for exp_id, j, f, any_foreground, bad in results[name]:
            per_expression[expression_key(name, exp_id)] = [j, f]
            # an expression with a missing or unreadable frame (--allow-missing) is decided neither way: it counts
            # as wrong in N-acc and T-acc alike, as its frames count 0 in J&F
            predicted[expression_key(name, exp_id)] = None if bad else any_foreground
            problems += bad
    if problems and not allow_missing:
        raise IncompletePredictions(split, pred_dir, problems, "pass --allow-missing to score them 0")
    missing = [p.describe() for p in problems if p.missing]
    wrong = [p.describe() for p in problems if not p.missing]
    scores = np.array(list(per_expression.values())) if per_expression else np.zeros((0, 2))
    j, f = (scores.mean(axis=0) if len(scores) else (0.0, 0.0))
    result = EvalResult(J=float(j), F=float(f), per_expression=per_expression, missing=missing, wrong_size=wrong,
                        release=f"MeViS {split.version}" if isinstance(split, MeViSSplit) else None,
                        no_target=_no_target_scores(split, per_expression, predicted, float((j + f) / 2)))
    if split.kinds():
        result.by_kind = _by_kind(split, per_expression)
    return result

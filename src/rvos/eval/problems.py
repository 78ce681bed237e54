"""Predictions that cannot be scored or submitted (missing, unreadable, of the wrong size), reported per video.

A split with no predictions at all has thousands of missing PNGs: the error says, per video, how many masks are
missing in how many expressions, and the full list goes to the JSON report (``--json``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rvos.data.splits import ReferringSplit
from rvos.errors import EvalError

MAX_VIDEO_LINES = 20


@dataclass(frozen=True)
class Problem:
    video: str
    exp_id: str
    frame: str
    why: str = "missing"  # or what is wrong with the file: "not a PNG", "size 12x16, expected 24x32", ...

    @property
    def path(self) -> str:
        """Relative to the prediction folder: ``<video>/<exp_id>/<frame>.png``."""
        return f"{self.video}/{self.exp_id}/{self.frame}.png"

    @property
    def missing(self) -> bool:
        return self.why == "missing"

    def describe(self) -> str:
        return self.path if self.missing else f"{self.path}: {self.why}"


def video_lines(split: ReferringSplit, problems: list[Problem], limit: int = MAX_VIDEO_LINES) -> list[str]:
    """One line per video with problems, in the split's order, at most ``limit`` of them."""
    by_video: dict[str, list[Problem]] = {}
    for p in problems:
        by_video.setdefault(p.video, []).append(p)
    lines = []
    for name in (n for n in split.videos if n in by_video):
        video = split.video(name)
        n_exp, total = len(video.expressions), len(video.expressions) * len(video)
        missing = [p for p in by_video[name] if p.missing]
        wrong = [p for p in by_video[name] if not p.missing]
        parts = []
        if len(missing) == total:
            parts.append(f"no predictions ({len(video)} frames x {n_exp} expressions)")
        elif missing:
            exps = len({p.exp_id for p in missing})
            parts.append(f"{len(missing)} of {total} masks missing, in {exps} of {n_exp} expressions")
        if wrong:
            parts.append(f"{len(wrong)} unreadable or of the wrong size (e.g. {wrong[0].describe()})")
        lines.append(f"  {name}: " + "; ".join(parts))
    if len(lines) > limit:
        lines = lines[:limit] + [f"  ... and {len(lines) - limit} more videos"]
    return lines


class IncompletePredictions(EvalError):
    """Some predictions are missing or cannot be read; the message summarises them per video and
    :meth:`to_json` lists every one."""

    def __init__(self, split: ReferringSplit, pred_dir, problems: list[Problem], remedy: str):
        self.missing = [p.describe() for p in problems if p.missing]
        self.wrong_size = [p.describe() for p in problems if not p.missing]
        videos = len({p.video for p in problems})
        head = (f"{len(self.missing)} missing and {len(self.wrong_size)} unreadable or wrong-size predictions in "
                f"{pred_dir}, in {videos} of {len(split.videos)} videos ({remedy}; --json FILE lists every file):")
        super().__init__("\n".join([head, *video_lines(split, problems)]))

    def to_json(self) -> dict:
        return {"error": str(self).split("\n", 1)[0], "missing": self.missing, "wrong_size": self.wrong_size}

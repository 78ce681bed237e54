"""The one sample schema every dataset reader produces.

A split is a set of videos; each video has ordered frames and referring expressions; an expression refers to one
or more objects (possibly none), and its target in a frame is the union of its objects' masks there.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Expression:
    exp_id: str
    text: str
    obj_ids: tuple[str, ...] = ()
    # Keys of the objects' masks: MeViS ``mask_dict`` anno_ids, or palette indices in Ref-YouTube-VOS annotations.
    anno_ids: tuple[str, ...] = ()
    # The kind of expression (appearance, motion, ...), where the split records one (the synthetic benchmark does).
    kind: str | None = None


@dataclass(frozen=True)
class Video:
    name: str
    frames: tuple[str, ...]  # frame names without extension, in temporal order
    expressions: dict[str, Expression] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


def normalize_text(text: str) -> str:
    """Lower case with collapsed whitespace, as every RVOS loader normalises sentences."""
    return " ".join(text.lower().split())

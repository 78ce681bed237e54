"""Which expressions of a split share a target: the index DsHmp's contrastive memory bank reads.

Every expression of the split is an entry, numbered in the order of ``meta_expressions.json`` (videos, then their
expressions), as the official ``tools/get_refer_id.py`` numbers them. An entry's **positives** are the entries of
the same video whose expressions name the same objects (itself included); its **distractors** are the video's
other entries. (The official script keys a target by the object ids joined without a separator, so ids [1, 23]
and [12, 3] would share a key there; here the ids are compared as a tuple.)
"""

from __future__ import annotations

from dataclasses import dataclass

from rvos.data.splits import ReferringSplit


@dataclass(frozen=True)
class ContrastiveIndex:
    entries: dict[tuple[str, str], int]  # (video, expression id) -> entry
    positives: tuple[tuple[int, ...], ...]  # per entry
    distractors: tuple[tuple[int, ...], ...]  # per entry

    def __len__(self) -> int:
        return len(self.entries)

    def of(self, video: str, exp_id: str) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """(entry, positives, distractors) of one expression."""
        entry = self.entries[(video, exp_id)]
        return entry, self.positives[entry], self.distractors[entry]


def contrastive_index(split: ReferringSplit) -> ContrastiveIndex:
    entries: dict[tuple[str, str], int] = {}
    targets: list[tuple[str, tuple[str, ...]]] = []
    by_video: dict[str, list[int]] = {}
    for name, video in split.videos.items():
        for exp_id, exp in video.expressions.items():
            entries[(name, exp_id)] = len(targets)
            by_video.setdefault(name, []).append(len(targets))
            targets.append((name, exp.obj_ids))
    by_target: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for entry, target in enumerate(targets):
        by_target.setdefault(target, []).append(entry)
    positives = tuple(tuple(by_target[t]) for t in targets)
    distractors = tuple(tuple(e for e in by_video[target[0]] if targets[e] != target) for target in targets)
    return ContrastiveIndex(entries, positives, distractors)

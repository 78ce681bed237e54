"""Write the synthetic motion benchmark in the MeViS layout.

``OUT/<split>/JPEGImages/<video>/<frame>.jpg``, ``OUT/<split>/meta_expressions.json`` (with an extra ``kind`` per
expression) and, except for ``valid``, ``OUT/<split>/mask_dict.json``. Deterministic for a seed: each video is
drawn from its own generator seeded by (seed, split, index), so a split's content does not depend on the others.
Each split is written into a hidden folder and renamed into place when complete, and ``OUT/synth.json`` records
the settings, so an interrupted run never leaves a half-written split that looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvos.data import rle
from rvos.data.frames import write_frame
from rvos.data.synth.language import make_expressions
from rvos.data.synth.scene import make_objects, render
from rvos.errors import DataError
from rvos.fileio import atomic_folder, write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "valid_u", "valid")


@dataclass(frozen=True)
class SynthSpec:
    """Settings of a synthetic benchmark; ``OUT/synth.json`` holds them."""

    train: int = 2000  # the tiny configs' heads learnt 400 videos' objects by heart (synth_learning.md, 24th session)
    valid_u: int = 50
    valid: int = 50
    seed: int = 0
    frames: int = 24
    height: int = 96
    width: int = 160
    min_objects: int = 2
    max_objects: int = 5
    lookalike_prob: float = 0.6  # chance that a video holds a group of look-alikes told apart only by motion
    leave_prob: float = 0.25  # chance that a moving / turning object leaves the picture (and comes back)

    def count(self, split: str) -> int:
        return {"train": self.train, "valid_u": self.valid_u, "valid": self.valid}[split]

    def validate(self) -> None:
        if min(self.train, self.valid_u, self.valid) < 0:
            raise DataError("video counts must be zero or more")
        if self.frames < 2:
            raise DataError(f"--frames must be at least 2, got {self.frames}")
        if self.height < 32 or self.width < 32:
            raise DataError(f"frames must be at least 32x32 pixels, got {self.height}x{self.width}")
        if not 2 <= self.min_objects <= self.max_objects <= 8:
            raise DataError("need 2 <= min_objects <= max_objects <= 8")


def video_rng(spec: SynthSpec, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, zlib.crc32(split.encode()), index])


def make_video(spec: SynthSpec, split: str, index: int):
    """(frames, objects, visible masks, expressions) of one video; every expression's target is visible somewhere."""
    rng = video_rng(spec, split, index)
    for _ in range(20):
        n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
        objects = make_objects(rng, spec.frames, spec.height, spec.width, n, spec.lookalike_prob, spec.leave_prob)
        frames, masks = render(rng, objects, spec.frames, spec.height, spec.width)
        visible = {o.obj_id: bool(masks[k].any()) for k, o in enumerate(objects)}
        expressions = make_expressions(objects, visible, rng)
        if expressions:
            return frames, objects, masks, expressions
    raise RuntimeError(f"could not make a video with expressions for {split} {index}")


def _write_split(spec: SynthSpec, out: Path, split: str, progress: bool) -> None:
    with atomic_folder(out / split) as tmp:
        videos, mask_dict = {}, {}
        anno_id = 0
        with_masks = split != "valid"
        for index in tqdm(range(spec.count(split)), desc=f"synth {split}", disable=not progress, leave=False):
            name = f"{split}_{index:05d}"
            frames, objects, masks, expressions = make_video(spec, split, index)
            frame_names = [f"{t:05d}" for t in range(spec.frames)]
            for t, frame in enumerate(frames):
                write_frame(tmp / "JPEGImages" / name / f"{frame_names[t]}.jpg", frame, quality=92)
            anno_of = {}
            for k, obj in enumerate(objects):
                anno_of[obj.obj_id] = anno_id
                mask_dict[str(anno_id)] = [rle.encode(m) if m.any() else None for m in masks[k]]
                anno_id += 1
            exps = {}
            for e, exp in enumerate(expressions):
                entry = {"exp": exp.text}
                if with_masks:
                    entry |= {"obj_id": list(exp.obj_ids), "anno_id": [anno_of[o] for o in exp.obj_ids]}
                entry["kind"] = exp.kind
                exps[str(e)] = entry
            videos[name] = {"expressions": exps, "vid_id": index, "frames": frame_names}
        write_json(tmp / "meta_expressions.json", {"videos": videos})
        if with_masks:
            write_json(tmp / "mask_dict.json", mask_dict)


def write_benchmark(out: str | os.PathLike, spec: SynthSpec, overwrite: bool = False, progress: bool = True) -> Path:
    """Generate every split of ``spec`` under ``out``; refuses to touch an existing benchmark unless ``overwrite``."""
    spec.validate()
    out = Path(out)
    marker = out / "synth.json"
    existing = [s for s in SPLITS if (out / s).exists()]
    if (existing or marker.exists()) and not overwrite:
        raise DataError(f"{out} already holds a dataset ({', '.join(existing) or 'synth.json'}); "
                        "choose another folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for split in SPLITS:
        _write_split(spec, out, split, progress)
    write_json(marker, asdict(spec), indent=2)
    log.info("wrote the synthetic benchmark to %s", out)
    return out


def read_spec(out: str | os.PathLike) -> SynthSpec | None:
    """The settings of a complete benchmark in ``out``, or None when there is none."""
    marker = Path(out) / "synth.json"
    if not marker.is_file():
        return None
    try:
        return SynthSpec(**json.loads(marker.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise DataError(f"{marker} is not a synthetic benchmark description ({exc})") from None

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
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rvos.data import rle
from rvos.data.frames import write_frame
from rvos.data.synth.language import make_expressions
from rvos.data.synth.scene import make_objects, render
from rvos.data.synth.spec import SynthSpec
from rvos.errors import DataError
from rvos.fileio import atomic_folder, write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "valid_u", "valid")


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

"""Speed of `rvos eval` against a straightforward per-frame implementation of the same definitions.

The data: 50 videos x 2 expressions x 30 frames at 360x640 in the MeViS layout (object masks from the synthetic
scene generator, some expressions with two objects), and predictions that are the targets shifted, grown or
shrunk, with some frames empty, written as 0/255 PNGs. Both implementations read the same PNGs and RLEs and are
timed in the same run; their scores must agree to 1e-9.

    python benchmarks/eval_speed.py [--out benchmarks/results/eval_speed.json] [--data DIR] [--note TEXT]

``--data DIR`` generates the data into DIR once and reuses it on later runs (it is the same for a given seed);
the load average before and after the timings is recorded, since another process on the machine slows both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as coco_mask

import rvos.data.frames as frame_io
from rvos.data import rle
from rvos.data.frames import write_frame, write_mask_png
from rvos.data.synth.scene import make_objects, render
from rvos.engine.machine import describe_machine
from rvos.eval import reference
from rvos.eval.evaluate import evaluate
from rvos.fileio import write_json

VIDEOS, EXPRESSIONS, FRAMES, HEIGHT, WIDTH = 50, 2, 30, 360, 640


def make_data(root: Path, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    split, pred = root / "valid_u", root / "pred"
    videos, mask_dict, anno = {}, {}, 0
    for v in range(VIDEOS):
        name = f"video_{v:03d}"
        objects = make_objects(rng, FRAMES, HEIGHT, WIDTH, 3, lookalike_prob=0.5, leave_prob=0.3)
        frames, masks = render(rng, objects, FRAMES, HEIGHT, WIDTH)
        for t in range(FRAMES):
            write_frame(split / "JPEGImages" / name / f"{t:05d}.jpg", frames[t])
        ids = []
        for k in range(len(objects)):
            mask_dict[str(anno)] = [rle.encode(m) if m.any() else None for m in masks[k]]
            ids.append(anno)
            anno += 1
        exps = {"0": {"exp": "one object", "obj_id": [1], "anno_id": [ids[0]]},
                "1": {"exp": "two objects", "obj_id": [2, 3], "anno_id": [ids[1], ids[2]]}}
        videos[name] = {"expressions": exps, "frames": [f"{t:05d}" for t in range(FRAMES)]}
        for exp_id, objs in (("0", [0]), ("1", [1, 2])):
            target = masks[objs].any(axis=0)
            dx, dy = rng.integers(-6, 7, size=2)
            kernel = np.ones((5, 5), np.uint8)
            for t in range(FRAMES):
                p = np.roll(target[t], (int(dy), int(dx)), axis=(0, 1)).astype(np.uint8)
                p = cv2.dilate(p, kernel) if rng.random() < 0.3 else cv2.erode(p, kernel) if rng.random() < 0.3 else p
                if rng.random() < 0.05:
                    p[:] = 0
                write_mask_png(pred / name / exp_id / f"{t:05d}.png", p.astype(bool))
    write_json(split / "meta_expressions.json", {"videos": videos})
    write_json(split / "mask_dict.json", mask_dict)
    return split, pred


def reference_eval(split: Path, pred: Path) -> dict[str, list[float]]:
    """The official scripts' way: per expression, per frame: decode, read, J, F."""
    meta = json.loads((split / "meta_expressions.json").read_text())["videos"]
    masks = json.loads((split / "mask_dict.json").read_text())
    out = {}
    for name, video in meta.items():
        for exp_id, exp in video["expressions"].items():
            js, fs = [], []
            for t, frame in enumerate(video["frames"]):
                p = cv2.imread(str(pred / name / exp_id / f"{frame}.png"), cv2.IMREAD_GRAYSCALE)
                g = np.zeros(p.shape, np.uint8)
                for a in exp["anno_id"]:
                    r = masks[str(a)][t]
                    if r:
                        g += coco_mask.decode(r)
                js.append(reference.db_eval_iou(g, p))
                fs.append(reference.f_measure(p, g))
            out[f"{name}_{exp_id}"] = [float(np.mean(js)), float(np.mean(fs))]
    return out


def timed(fn, repeat: int = 3):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "eval_speed.json")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, help="generate the data here once, and reuse it when present")
    parser.add_argument("--note", help="recorded with the results (e.g. what else ran on the machine)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        if (data / "valid_u" / "mask_dict.json").is_file() and (data / "pred").is_dir():
            split, pred = data / "valid_u", data / "pred"
        else:
            split, pred = make_data(data)
        load_before = os.getloadavg()
        t_ref, ref = timed(lambda: reference_eval(split, pred), args.repeat)
        rows = {"reference (per frame, 1 process)": t_ref}
        max_diff = 0.0
        for workers in (1, 2, 4):
            if workers > (os.cpu_count() or 1):
                continue
            t, res = timed(lambda: evaluate(split, pred, workers=workers, progress=False), args.repeat)
            rows[f"rvos eval --workers {workers}"] = t
            max_diff = max(max_diff, max(abs(a - b) for k in ref for a, b in zip(ref[k], res.per_expression[k])))
        load_after = os.getloadavg()
    record = {
        "benchmark": "eval_speed",
        "data": f"{VIDEOS} videos x {EXPRESSIONS} expressions x {FRAMES} frames at {HEIGHT}x{WIDTH}",
        "machine": f"{describe_machine()}, {platform.platform()}",
        "seconds (best of %d)" % args.repeat: rows,
        "speedup vs reference": {k: rows["reference (per frame, 1 process)"] / v for k, v in rows.items()},
        "max |difference| of per-expression J or F": max_diff,
        "prediction PNG decoder": "libspng (pyspng)" if frame_io.pyspng is not None else "OpenCV",
        "load average (1, 5, 15 min) before and after": [list(load_before), list(load_after)],
    }
    if args.note:
        record["note"] = args.note
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, record, indent=2)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

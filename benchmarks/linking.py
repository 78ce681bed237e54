"""What the linking of conv-CLIP's frame queries into slots costs (``model.track.link`` "objects").

    python benchmarks/linking.py RUN_DIR [--split-dir runs/synth_learning/data/valid_u] [--videos 50]

On a synthetic split (the benchmark that ``rvos synth`` writes), one run's checkpoint is read three ways, every
expression scored as ``rvos.engine.diagnose`` scores the output (J&F by expression kind):

* as configured: the linking with the run's ``track.link_colour``, ``link_overlap`` and ``link_new_slot``;
* by query and place alone: the linking without the colour and overlap terms, a new slot at the default cost (as
  before the twenty-sixth session);
* by the annotated objects (oracle): each frame's queries on an object matched (Hungarian, IoU over ``ORACLE_IOU``)
  to the video's annotated objects, every object of the scene, referred to or not (regenerated from the benchmark's
  ``synth.json``), each object keeping a slot of its own; the other queries fill the remaining slots. What the
  frames' queries would give if they were linked without a mistake: the bound of any linking.

Prints a JSON record; ``benchmarks/results/synth_learning.md`` quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from rvos.data.schema import normalize_text
from rvos.data.splits import open_split
from rvos.data.synth.generate import make_video
from rvos.data.synth.spec import SynthSpec
from rvos.data.transforms import resize_frames, resized_shape
from rvos.engine.checkpoint import find_model, load_model
from rvos.eval.metrics import jaccard_and_f
from rvos.models.modules.query_init import NEW_TRACK_COST
from rvos.models.modules.track_grounding import on_mask_grid

ORACLE_IOU = 0.2  # a query's frame mask is on an annotated object when their IoU passes this
ROWS = ("as configured", "by query and place alone", "by the annotated objects (oracle)")


class OracleLinker:
    """The linker that knows the objects: ``objects`` (O, T, h, w) bool on the mask grid, the video's every object;
    slot o holds object o (a video with more objects than slots: the first ones)."""

    def __init__(self, objects: torch.Tensor):
        self.objects, self.frame = objects.float().flatten(2), 0

    def link(self, queries, positions, on_object, colours=None, masks=None) -> torch.Tensor:
        b, n, q = on_object.shape
        perms = torch.zeros(b, n, q, dtype=torch.long)
        for j in range(n):
            found = torch.nonzero(on_object[0, j]).flatten()
            now, objects = masks[0, j, found].flatten(1).float(), self.objects[:q, self.frame + j]
            inter = now @ objects.T
            iou = (inter / (now.sum(1)[:, None] + objects.sum(1)[None] - inter).clamp(min=1)).numpy()
            rows, cols = linear_sum_assignment(-iou) if len(found) else ([], [])
            pairs = [(int(found[r]), int(c)) for r, c in zip(rows, cols) if iou[r, c] > ORACLE_IOU]
            slots = [c for _, c in pairs]
            perms[0, j, slots] = torch.tensor([k for k, _ in pairs], dtype=torch.long)
            rest = [s for s in range(q) if s not in slots]
            perms[0, j, rest] = torch.tensor([k for k in range(q) if k not in {k for k, _ in pairs}], dtype=torch.long)
        self.frame += n
        return perms


@torch.inference_mode()
def read_linkings(run: Path, split_dir: Path, n_videos: int) -> dict:
    model, cfg = load_model(find_model(run))
    if not model.links_objects:
        raise SystemExit(f"{run} does not link objects (model.track.link {cfg.model.track.link!r})")
    spec_file = split_dir.parent / "synth.json"
    if not spec_file.exists():
        raise SystemExit(f"{spec_file} is missing: the oracle row regenerates a synthetic benchmark's objects")
    spec = SynthSpec(**json.loads(spec_file.read_text()))
    split = open_split(split_dir)
    model.eval()
    configured = model.cfg.track
    plain = dataclasses.replace(configured, link_colour=0.0, link_overlap=0.0, link_new_slot=NEW_TRACK_COST)
    scores = {row: [] for row in ROWS}
    for name in tqdm(list(split.videos)[:n_videos], desc="linking", unit="video", leave=False):
        exps = [e for e in split.video(name).expressions.values() if normalize_text(e.text)]
        frames = split.read_frames(name)
        size = frames.shape[1:3]
        model_size = resized_shape(*size, cfg.data.short_side, cfg.data.max_long_side)
        x = model.pad(torch.from_numpy(resize_frames(frames, model_size)).permute(0, 3, 1, 2).float().div(255))
        objects = torch.from_numpy(np.asarray(make_video(spec, split_dir.name, int(name.rsplit("_", 1)[1]))[2]))
        grid = (x.shape[-2] // model.mask_stride, x.shape[-1] // model.mask_stride)
        objects = on_mask_grid(model.pad(F.interpolate(objects.float(), size=model_size, mode="nearest")), grid)
        for row in ROWS:
            model.cfg.track = plain if row == ROWS[1] else configured
            if row == ROWS[2]:
                model.object_linker = lambda: OracleLinker(objects)  # noqa: E731
            session = model.start_session(model.prepare_text([normalize_text(e.text) for e in exps]),
                                          cfg.infer.score_threshold)
            vars(model).pop("object_linker", None)
            session.observe(x, 0)
            session.decode()
            for exp, out in zip(exps, session.predict(x, 0)):
                j, f = jaccard_and_f(split.target_masks(name, exp.exp_id),
                                     out.masks(model.mask_stride, model_size, size).numpy())
                scores[row].append((exp.kind or "all", float((j.mean() + f.mean()) / 2)))
    model.cfg.track = configured
    record = {"run": str(run), "split": str(split_dir), "videos": min(n_videos, len(split.videos)),
              "link_colour": configured.link_colour, "link_overlap": configured.link_overlap,
              "link_new_slot": configured.link_new_slot}
    for row, values in scores.items():
        kinds = sorted({k for k, _ in values})
        record[row] = {"all": round(float(np.mean([v for _, v in values])), 4)} | {
            k: round(float(np.mean([v for kk, v in values if kk == k])), 4) for k in kinds}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--split-dir", type=Path, default=Path("runs/synth_learning/data/valid_u"))
    parser.add_argument("--videos", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(read_linkings(args.run, args.split_dir, args.videos), indent=2))


if __name__ == "__main__":
    main()

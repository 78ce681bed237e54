"""Where MUTR's masks lose: the reference points of its dynamic mask head.

    python benchmarks/reference_points.py RUN_DIR [--split-dir runs/synth_learning/data/valid_u] [--videos 30]
        [--frames 4]

MUTR draws a video query's mask in each frame around a reference point, the centre of a box: that of the frame
query of the same index in that frame. For a MUTR run, on an annotated split: each annotated object of the first
``--videos`` videos (in a clip of ``--frames`` frames spread over the video, as training samples clips, or the whole
video, as inference reads it, with ``--frames 0``; the masks of the video's first sentence), the video query whose
masks cover it best (mean IoU over the frames it is visible in, on the stride-4 mask grid, with the model's own
points), and the mean IoU of that query's masks drawn around:

* ``model``: the model's own points (its ``infer_heads``);
* ``index_first`` / ``index_last``: the centre of the same-index frame query's box of the first decoder layer (the
  official pairing) or of the last (``model.infer_heads: last``);
* ``best_of_frame``: in each frame the best of that frame's query box centres (last layer; an oracle choice among
  the frame queries);
* ``object_centre``: the object's own centroid (an oracle point);
* ``path_<s>``: an untrained repair of the same-index points: over the clip, the path through the frames' box
  centres (last layer) with the least movement between consecutive frames, plus ``s`` pixels for each frame that
  leaves the same index (:func:`smooth_path`); it mends a point that jumps to another object for a frame or two;

and the distance (pixels of the model's input) from the object's centroid to the model's point, to the
same-index box centres, and to the nearest centre among the frame's queries, and how long the stretches of frames
last where the same-index (last layer) centre lies over ``FAR`` (8) pixels from the object. Prints a JSON record;
``benchmarks/results/synth_learning.md`` quotes it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rvos.data.schema import normalize_text
from rvos.data.splits import open_split
from rvos.data.transforms import resize_frames, resized_shape
from rvos.engine.checkpoint import find_model, load_model
from rvos.models.modules.query_init import reorder

from track_diagnosis import iou  # the sibling benchmark's (this script's folder is on the path when it runs)

FAR = 8  # pixels of the model's input: a point this far from the object's centroid lies off the object


def centroids(masks: torch.Tensor, stride: int) -> torch.Tensor:
    """(..., h, w) bool on a stride-``stride`` grid -> (..., 2) the (x, y) centroids in input pixels."""
    h, w = masks.shape[-2:]
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    area = masks.flatten(-2).sum(-1).float().clamp(min=1)
    centre = torch.stack([(x * masks).flatten(-2).sum(-1), (y * masks).flatten(-2).sum(-1)], -1) / area[..., None]
    return centre * stride + stride // 2


def smooth_path(centres: torch.Tensor, own: int, switch: float) -> torch.Tensor:
    """centres (T, Q, 2) of each frame's queries -> (T,) the query to take in each frame for video query ``own``: the
    path with the least total movement between consecutive frames plus ``switch`` for each frame off ``own``
    (Viterbi)."""
    leave = torch.full(centres.shape[1:2], float(switch))
    leave[own] = 0.0
    cost, back = leave.clone(), []
    for t in range(1, centres.shape[0]):
        cost, arg = (cost[:, None] + torch.cdist(centres[t - 1], centres[t])).min(0)
        cost = cost + leave
        back.append(arg)
    path = [int(cost.argmin())]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return torch.tensor(path[::-1])


def stretches(flags: list[bool]) -> list[int]:
    """The lengths of the runs of True."""
    runs, n = [], 0
    for flag in [*flags, False]:
        if flag:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


class Capture:
    """What one MUTR forward pass computes on the way: the mask features, the last layer's video queries, every
    decoder layer's boxes (with ``model.proposals`` in the order the linking gives the frame queries), and the points
    the mask head was given."""

    def __init__(self, model):
        self.model, self.seen = model, {}
        decode, link = model.transformer.decode, model.link_queries

        def keep_boxes(*args, **kwargs):
            hs, boxes = decode(*args, **kwargs)
            self.seen["boxes"] = boxes.detach()
            return hs, boxes

        def keep_links(*args):
            perms = link(*args)
            t_len, q = perms.shape[1:]
            self.seen["boxes"] = torch.stack([reorder(x.view(1, t_len, q, 4), perms)[0] for x in self.seen["boxes"]])
            return perms

        model.transformer.decode = keep_boxes
        model.link_queries = keep_links
        model.pixel_decoder.register_forward_hook(lambda m, i, o: self.seen.update(features=o.detach()))
        model.mti.register_forward_hook(lambda m, i, o: self.seen.update(video=o.detach()))
        model.mask_head.register_forward_hook(lambda m, i, o: self.seen.update(points=i[2].detach()))

    def masks(self, points: torch.Tensor) -> torch.Tensor:
        """points (T, Q, 2) in input pixels -> the video queries' masks (T, Q, h, w) drawn around them."""
        t_len = points.shape[0]
        video = self.seen["video"].expand(t_len, -1, -1)
        return self.model.mask_head(self.seen["features"], video, points)[:, :, 0] > 0


@torch.inference_mode()
def measure(run: Path, split_dir: Path, n_videos: int, n_frames: int = 4, switches=(8.0, 16.0, 32.0)) -> dict:
    model, cfg = load_model(find_model(run))
    if model.cfg.name != "mutr":
        raise SystemExit(f"{run} is a {model.cfg.name} run; this benchmark reads MUTR's reference points")
    capture = Capture(model)
    split = open_split(split_dir)
    rows = {k: [] for k in ("model", "index_first", "index_last", "best_of_frame", "object_centre",
                            *(f"path_{s:g}" for s in switches))}
    far = []  # lengths of the stretches of frames where the same-index (last layer) centre is over FAR pixels off
    errors = {k: [] for k in ("model", "index_first", "index_last", "nearest_of_frame")}
    for name in list(split.videos)[:n_videos]:
        video, frames = split.video(name), split.read_frames(name)
        model_size = resized_shape(*frames.shape[1:3], cfg.data.short_side, cfg.data.max_long_side)
        picked = (np.linspace(0, len(frames) - 1, n_frames).round().astype(int).tolist() if n_frames
                  else list(range(len(frames))))
        x = torch.from_numpy(resize_frames(frames[picked], model_size)).permute(0, 3, 1, 2).float().div(255)
        objects = torch.from_numpy(split.masks(name, split.object_ids(name), picked)).float()  # (M, T, H, W)
        grid = F.interpolate(objects, size=model_size, mode="bilinear", align_corners=False)
        grid = F.interpolate(grid, size=(model_size[0] // 4, model_size[1] // 4), mode="area") > 0.5
        sentence = next(normalize_text(e.text) for e in video.expressions.values() if normalize_text(e.text))
        out = model.encode_clips(x[None], model.encode_text(model.prepare_text([sentence])), [-1])
        own = out["masks"][0, 0] > 0  # (T, Q, h, w)
        seen = capture.seen
        own_points = seen["points"]  # (T, Q, 2), before the redrawn masks replace them
        h, w = seen["features"].shape[-2:]
        grid = grid[..., :h, :w]
        scale = torch.tensor([model_size[1], model_size[0]], dtype=torch.float32)
        first, last = (seen["boxes"][i][..., :2] * scale for i in (0, -1))  # (T, Q, 2) each
        drawn = {"index_first": capture.masks(first), "index_last": capture.masks(last)}
        every_frame = torch.arange(len(picked))
        for gt in grid:  # (T, h, w)
            visible = gt.flatten(1).any(1)
            if not visible.any():
                continue
            q = int(iou(own, gt[:, None])[visible].mean(0).argmax())
            centre = centroids(gt, 4)  # (T, 2)
            rows["model"].append(iou(own[:, q], gt)[visible].mean().item())
            for key, masks in drawn.items():
                rows[key].append(iou(masks[:, q], gt)[visible].mean().item())
            points = last.clone()
            points[:, q] = torch.where(visible[:, None], centre, points[:, q])
            rows["object_centre"].append(iou(capture.masks(points)[:, q], gt)[visible].mean().item())
            best = torch.zeros(len(picked))
            for j in range(last.shape[1]):  # frame query j's centre in every frame
                points = last.clone()
                points[:, q] = last[:, j]
                best = torch.maximum(best, iou(capture.masks(points)[:, q], gt))
            rows["best_of_frame"].append(best[visible].mean().item())
            for switch in switches:
                points = last.clone()
                points[:, q] = last[every_frame, smooth_path(last, q, switch)]
                rows[f"path_{switch:g}"].append(iou(capture.masks(points)[:, q], gt)[visible].mean().item())
            distance = lambda p: (p - centre).norm(dim=-1)  # noqa: E731
            off = distance(last[:, q])  # (T,) the same-index last-layer centre's
            errors["model"].extend(distance(own_points[:, q])[visible].tolist())
            errors["index_first"].extend(distance(first[:, q])[visible].tolist())
            errors["index_last"].extend(off[visible].tolist())
            errors["nearest_of_frame"].extend(distance(last.transpose(0, 1)).min(0).values[visible].tolist())
            far.extend(stretches(((off > FAR) & visible).tolist()))
    return {
        "run": str(run), "split": str(split_dir), "videos": n_videos, "frames": n_frames or "all",
        "objects": len(rows["model"]),
        "infer_heads": model.cfg.infer_heads,
        "iou_of_the_best_query": {k: float(np.mean(v)) for k, v in rows.items()},
        "distance_to_the_object_centre": {
            k: {"mean": float(np.mean(v)), "median": float(np.median(v)), "p90": float(np.quantile(v, 0.9)),
                f"over_{FAR}_pixels": float(np.mean(np.array(v) > FAR))} for k, v in errors.items()},
        "far_stretches_of_the_same_index": {
            "stretches": len(far), "frames": int(sum(far)),
            "frames_in_stretches_of": {"1-2": sum(n for n in far if n <= 2), "3-5": sum(n for n in far if 3 <= n <= 5),
                                       "over 5": sum(n for n in far if n > 5)}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--split-dir", type=Path, default=Path("runs/synth_learning/data/valid_u"))
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--frames", type=int, default=4, help="frames of the clip, spread over the video (0: all)")
    args = parser.parse_args()
    print(json.dumps(measure(args.run, args.split_dir, args.videos, args.frames), indent=1))


if __name__ == "__main__":
    main()

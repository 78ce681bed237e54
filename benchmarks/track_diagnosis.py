"""Where a track-grounding run loses: the masks of its query slots, or the head that scores them.

    python benchmarks/track_diagnosis.py RUN_DIR [--split-dir runs/synth_learning/data/valid_u] [--videos 50]

For a run trained with ``model.track.enabled`` (``vlm_tiny_synth``, or DsHmp with it, whose slots are its clip
queries and whose masks depend on the sentence: the segmentation rows read the first sentence's), on an annotated
split:

* segmentation, per annotated object (IoU at the input resolution): the best slot over the whole video (what the
  output can be), the best query in each frame on its own (what perfect linking of the frames' queries would give),
  and how the per-frame IoUs spread (a query that covers several identical objects at once lands at 0.3 to 0.5);
  by object size, the best query in each frame against the object itself squeezed through the mask grid (the
  ceiling of any query); an object is small when its median visible area is under ``SMALL`` of the short side
  squared (the synthetic benchmark's small shapes cover 0.009 to 0.017 of it, its big ones 0.024 to 0.048); and by
  neighbourhood: the object beside another one (within 2 pixels) or alone, and the best query's mask spilling onto
  another object (more than ``SPILL`` of its pixels) or not, and beside an object of its own colour (a look-alike) or
  of another colour only; for SgMg the same by neighbourhood on the queries' stride-2 priors (what the dynamic head
  draws, before the refinement), so that a mask joining two neighbours is traced to the head or to the refinement,
  and the best prior's query's box (whose centre the dynamic head's coordinates are relative to): its IoU with the
  object's box and whether its centre lies on the object;
* grounding, per expression (top-1 accuracy: the best-scored one is a referred object): the track head on the
  annotated objects' own tracks (the head alone, with perfect masks), and on the model's slots (the best-scored slot's
  masks cover a referred object, IoU over the video at least 0.3); and for the sentences that refer to one object, where
  the best-scored slot (the sentence's own slots) lands: on the object (IoU over the video at least ``GOOD``), on
  another object while a slot was the object (the head's pick), on a part of objects or nothing while a slot was the
  object, or no slot was the object (the masks' or the linking's fault), with the top slot's mean IoU in each case.

Prints a JSON record; ``benchmarks/results/synth_learning.md`` quotes it.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, box_iou, masks_to_boxes

from rvos.data.schema import normalize_text
from rvos.data.splits import open_split
from rvos.data.transforms import resize_frames, resized_shape
from rvos.engine.checkpoint import find_model, load_model
from rvos.engine.diagnose import squeeze_through_mask_grid
from rvos.models.meta.base import upsample_masks
from rvos.models.modules.track_grounding import frame_descriptors

BINS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.01]
SMALL = 0.02
SPILL = 0.2
SAME_COLOUR = 30
GOOD = 0.5  # a slot "is" an object when its IoU with it over the video reaches this


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Broadcast (..., H, W) bool -> (...) IoU (both empty: 1)."""
    inter = (a & b).flatten(-2).sum(-1).float()
    union = (a | b).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@torch.inference_mode()
def spills(mask: torch.Tensor, others: torch.Tensor) -> bool:
    """Whether more than ``SPILL`` of a mask's pixels (H, W) bool lie on the other objects (H, W) bool."""
    return bool((mask & others).sum() > SPILL * mask.sum())


def neighbour_colour(frame: np.ndarray, objects: torch.Tensor, o: int, near: torch.Tensor) -> str:
    """frame (H, W, 3) uint8, the frame's objects (M, H, W) bool, an object beside another and its neighbourhood
    (H, W) bool -> "its own colour" when an object within it has the object's colour (median colours within
    ``SAME_COLOUR`` in every channel: the synthetic palette's colours differ by 105 or more in some channel, its noise
    is 6), else "another colour"."""
    def median(mask: torch.Tensor) -> np.ndarray:
        return np.median(frame[mask.numpy()].astype(np.float32), 0)

    own = median(objects[o])
    for k in range(len(objects)):
        if k != o and bool((objects[k] & near).any()) and np.abs(median(objects[k]) - own).max() < SAME_COLOUR:
            return "its own colour"
    return "another colour"


def pick_case(on_target: torch.Tensor, top: int, top_on_objects: torch.Tensor, target: int) -> str:
    """Where the best-scored slot of a single-target sentence lands: the slots' IoU over the video with the referred
    object (Q,), the best-scored slot, its IoU with every object (M,) and the referred object's index -> the case."""
    if float(on_target[top]) >= GOOD:
        return "the top slot is the object"
    if float(on_target.max()) < GOOD:
        return "no slot is the object"
    other = int(top_on_objects.argmax())
    if other != target and float(top_on_objects[other]) >= GOOD:
        return "a slot is the object, the head put another object first"
    return "a slot is the object, the head put a part of objects or nothing first"


def box_on(box: torch.Tensor, mask: torch.Tensor) -> tuple[float, bool]:
    """A query's box (cx, cy, w, h relative to the frame) and an object's mask (H, W) bool -> the IoU of the box with
    the object's box, and whether the box's centre lies on the object."""
    h, w = mask.shape
    box = box.float() * torch.tensor([w, h, w, h])
    extent = masks_to_boxes(mask[None]) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # the last pixels' far edges
    iou_box = float(box_iou(box_convert(box[None], "cxcywh", "xyxy"), extent))
    cx, cy = box[:2].tolist()
    return iou_box, bool(mask[min(max(int(cy), 0), h - 1), min(max(int(cx), 0), w - 1)])


def diagnose_tracks(run: Path, split_dir: Path, n_videos: int) -> dict:
    model, cfg = load_model(find_model(run))
    if model.track_head is None:
        raise SystemExit(f"{run} was trained without model.track")
    split = open_split(split_dir)
    slot_iou, frame_iou, frame_values = [], [], []
    by_size: dict[tuple[str, str], list[float]] = defaultdict(list)  # (size, row) -> per object-frame IoU
    neighbourhood: dict[str, list[float]] = defaultdict(list)  # per object-frame IoU of the best query in the frame
    priors: dict[str, list[tuple[float, bool]]] = defaultdict(list)  # SgMg: the best prior's IoU, and its spilling
    top1: dict[tuple[str, str], list[bool]] = defaultdict(list)
    picks: dict[str, list[tuple[str, float]]] = defaultdict(list)  # case -> (kind, the top slot's IoU on the object)
    for name in list(split.videos)[:n_videos]:
        video, frames = split.video(name), split.read_frames(name)
        size = frames.shape[1:3]
        model_size = resized_shape(*size, cfg.data.short_side, cfg.data.max_long_side)
        x = model.pad(torch.from_numpy(resize_frames(frames, model_size)).permute(0, 3, 1, 2).float().div(255))
        ids = split.object_ids(name)
        objects = torch.from_numpy(split.masks(name, ids, list(range(len(frames)))))  # (M, T, H, W)
        exps = [e for e in video.expressions.values() if normalize_text(e.text)]
        text = model.prepare_text([normalize_text(e.text) for e in exps])
        session = model.start_session(text, None)
        session.observe(x, 0)
        session.decode()
        candidates = session.candidates(x, 0)
        # segmentation: the slots' masks (Q, T, H, W) do not depend on the sentence here (the first sentence's)
        slots = upsample_masks(candidates[0][1].transpose(0, 1), model.mask_stride, model_size, size) > 0
        prior = prior_boxes = None
        if hasattr(session, "prior_masks"):  # SgMg: the stride-2 priors at the input resolution, the queries' boxes
            prior = upsample_masks(session.prior_masks(x, 0)[0].transpose(0, 1), 2, model_size, size) > 0
            prior_boxes = session.prior_boxes(x, 0)[0]  # (T, Q, 4) cx, cy, w, h relative to the frame
        visible = objects.flatten(1).any(1)
        per = iou(slots[:, None], objects[None])[:, visible]  # (Q, M', T)
        slot_iou += per.mean(-1).max(0).values.tolist()
        best = per.max(0).values  # (M', T)
        frame_iou += best.mean(-1).tolist()
        shown = objects[visible].flatten(2).any(-1)  # the frames where each object is seen
        frame_values += best[shown].tolist()
        # beside another object (within 2 pixels) or alone; and whether the best query's mask spills onto another
        # object (more than SPILL of its cells): a query that covers its neighbour too
        seen_index = visible.nonzero()[:, 0].tolist()
        best_query = per.argmax(0)  # (M', T)
        near = F.max_pool2d(objects[visible].float().flatten(0, 1)[:, None], 5, 1, 2)[:, 0] > 0
        near = near.view(len(seen_index), *objects.shape[1:])
        for m, o in enumerate(seen_index):
            rest = torch.cat([objects[:o], objects[o + 1:]]).any(0)  # (T, H, W) every other object
            for t in shown[m].nonzero()[:, 0].tolist():
                mask = slots[int(best_query[m, t]), t]
                beside = bool((near[m, t] & rest[t]).any())
                neighbourhood[f"beside another object: {beside}"].append(float(best[m, t]))
                if beside:
                    colour = f"beside another object: {neighbour_colour(frames[t], objects[:, t], o, near[m, t])}"
                    neighbourhood[colour].append(float(best[m, t]))
                neighbourhood[f"spills onto another object: {spills(mask, rest[t])}"].append(float(best[m, t]))
                if prior is not None:
                    ious = iou(prior[:, t], objects[o, t][None])
                    q = int(ious.argmax())
                    read = (float(ious.max()), spills(prior[q, t], rest[t]), *box_on(prior_boxes[t, q], objects[o, t]))
                    priors[f"beside another object: {beside}"].append(read)
                    if beside:
                        priors[colour].append(read)
        # by size: the best query and the object squeezed through the mask grid, in the frames where it is seen
        seen = objects[visible]
        area = seen.flatten(2).sum(-1).float() / min(size) ** 2  # (M', T)
        ceiling = iou(squeeze_through_mask_grid(model, seen, model_size, size), seen)  # (M', T)
        for m in range(len(area)):
            label = "small" if float(area[m][shown[m]].median()) < SMALL else "big"
            by_size[(label, "best query in each frame")] += best[m][shown[m]].tolist()
            by_size[(label, "squeezed through the mask grid")] += ceiling[m][shown[m]].tolist()
        # grounding: the head on the annotated objects' own tracks, at the mask grid (at the frames' resolution with
        # model.track.full_resolution), as the track loss reads them
        images = model.descriptor_frames(x)
        h, w = images.shape[-2:]
        grid = F.interpolate(model.pad(F.interpolate(objects.float(), size=model_size, mode="nearest")), size=(h, w),
                             mode="area") > 0.5
        descriptors = frame_descriptors(images, grid.float().transpose(0, 1))  # (T, M, D)
        windows = (model.track_head.crop_embed(model.frame_windows(x, descriptors, (h, w)))[None]
                   if model.cfg.track.crop else None)
        exact = model.track_embeds(descriptors[None], windows)[1][0]
        exact_logits = model.track_head.score(exact, model.track_text(text))  # (E, M)
        for k, e in enumerate(exps):
            referred = [ids.index(a) for a in e.anno_ids]
            top1[("exact tracks", e.kind or "all")].append(int(exact_logits[k].argmax()) in referred)
            probs, logits = candidates[k]
            masks = upsample_masks(logits.transpose(0, 1), model.mask_stride, model_size, size) > 0  # (Q, T, H, W)
            top = int(probs.mean(0).argmax())
            overlap = iou(masks[top][None], objects).mean(-1)  # (M,)
            top1[("slots", e.kind or "all")].append(int(overlap.argmax()) in referred and float(overlap.max()) >= 0.3)
            if len(referred) == 1:  # where the best-scored slot of a single-target sentence lands
                on_target = iou(masks, objects[referred[0]][None]).mean(-1)  # (Q,) over the video
                case = pick_case(on_target, top, overlap, referred[0])
                picks[case].append((e.kind or "all", float(on_target[top])))
    kinds = sorted({k for _, k in top1})
    single = Counter(kind for v in picks.values() for kind, _ in v)  # single-target sentences per kind
    hist = np.histogram(frame_values, bins=BINS)[0] / max(1, len(frame_values))
    return {
        "run": str(run), "videos": n_videos,
        "segmentation": {
            "objects": len(slot_iou),
            "best slot over the video (mean IoU)": round(float(np.mean(slot_iou)), 3),
            "best query in each frame (mean IoU)": round(float(np.mean(frame_iou)), 3),
            "per-frame best IoU, share of object-frames": {f"{lo:.1f}-{min(hi, 1.0):.1f}": round(float(v), 3)
                                                           for lo, hi, v in zip(BINS[:-1], BINS[1:], hist)},
            "by size (mean IoU over object-frames; share over 0.9)": {
                f"{label}, {row}": [round(float(np.mean(v)), 3), round(float(np.mean(np.array(v) > 0.9)), 3)]
                for (label, row), v in sorted(by_size.items())},
            "best query in each frame, by neighbourhood (mean IoU; share of object-frames)": {
                row: [round(float(np.mean(v)), 3), round(len(v) / max(1, len(frame_values)), 3)]
                for row, v in sorted(neighbourhood.items())},
        } | ({"the best prior in each frame (SgMg, stride 2), by neighbourhood (mean IoU; share spilling onto another "
              "object)": {row: [round(float(np.mean([r[0] for r in v])), 3),
                                round(float(np.mean([r[1] for r in v])), 3)]
                          for row, v in sorted(priors.items())},
              "the best prior's query's box, by neighbourhood (mean IoU with the object's box; share with its centre "
              "on the object)": {row: [round(float(np.mean([r[2] for r in v])), 3),
                                       round(float(np.mean([r[3] for r in v])), 3)]
                                 for row, v in sorted(priors.items())}} if priors else {}),
        "single-target sentences: where the top slot lands (share; its mean IoU on the object; share by kind)": {
            case: [round(len(v) / max(1, single.total()), 3), round(float(np.mean([x for _, x in v])), 3),
                   {k: round(sum(kind == k for kind, _ in v) / max(1, single[k]), 3) for k in kinds}]
            for case, v in sorted(picks.items())},
        "grounding top-1": {row: {"all": round(float(np.mean([v for (r, _), vs in top1.items() if r == row
                                                               for v in vs])), 3)}
                            | {k: round(float(np.mean(top1[(row, k)])), 3) for k in kinds}
                            for row in ("exact tracks", "slots")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--split-dir", type=Path, default=Path("runs/synth_learning/data/valid_u"))
    parser.add_argument("--videos", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(diagnose_tracks(args.run, args.split_dir, args.videos), indent=1))


if __name__ == "__main__":
    main()

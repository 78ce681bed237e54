"""Which of DsHmp's queries segment the objects: its frame decoder's (per frame) or its clip queries (the output's).

    python benchmarks/dshmp_frame_queries.py RUN_DIR [--split-dir runs/synth_learning/data/valid_u] [--videos 25]

For a DsHmp run, on an annotated split, per annotated object (IoU at the input resolution, the masks made for the
video's first sentence, as DsHmp's queries read the sentence): the frame decoder's best query in each frame (the bound
of any linking of the frame queries into tracks), also by size (small: a median visible area under ``SMALL`` of the
short side squared, as ``track_diagnosis.py``); the clip queries' best in each frame and best over the video (what
the output's candidates can be, before ``model.split_blobs`` cuts them), and their blob tracks' best over the video
(with ``model.split_blobs``); and with ``frame_decoder.proposals`` the frame queries linked into slots as
``model.track.link=objects`` links them (``vlm_tiny_synth``'s linking, whatever the run's config says), the best slot
over the video. Prints a JSON record; ``benchmarks/results/synth_learning.md`` quotes it.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from track_diagnosis import SMALL, iou  # benchmarks/, the script's folder

from rvos.config import load_config
from rvos.data.schema import normalize_text
from rvos.data.splits import open_split
from rvos.data.transforms import resize_frames, resized_shape
from rvos.engine.checkpoint import find_model, load_model
from rvos.models.meta.base import upsample_masks
from rvos.models.modules.query_init import reorder

# what model.track.link=objects reads, set to vlm_tiny_synth's values whatever the run's config says
LINKING = ("link", "min_objectness", "exclusive", "duplicate_iou", "link_colour", "link_overlap", "link_new_slot")


def linked_frame_queries(model, fo: dict, images: torch.Tensor) -> torch.Tensor:
    """The frame decoder's last outputs over a video of T frames (with proposals) and the padded frames (T, 3, H, W)
    -> the frame queries' mask logits linked into slots over the video (Q, T, h, w), as the model links them with
    ``model.track.link=objects`` (:meth:`DsHmpModel.object_frame_masks`, :meth:`DsHmpModel.link_frame_queries`)."""
    masks, peaks = model.object_frame_masks(fo)
    descriptors = model.mask_descriptors(model.descriptor_frames(images), masks)
    perms = model.link_frame_queries(fo, masks, peaks, descriptors, 1)
    return reorder(masks[None], perms)[0].transpose(0, 1)


@torch.no_grad()
def frame_and_clip_queries(run: Path, split_dir: Path, n_videos: int) -> dict:
    model, cfg = load_model(find_model(run))
    if cfg.model.name != "dshmp":
        raise SystemExit(f"{run} holds a {cfg.model.name} model, not DsHmp")
    model.eval()
    linking = load_config("vlm_tiny_synth").model.track
    model.cfg.track = replace(model.cfg.track, **{k: getattr(linking, k) for k in LINKING})
    split = open_split(split_dir)
    rows: dict[str, list[float]] = defaultdict(list)
    for name in list(split.videos)[:n_videos]:
        video, frames = split.video(name), split.read_frames(name)
        size = frames.shape[1:3]
        model_size = resized_shape(*size, cfg.data.short_side, cfg.data.max_long_side)
        x = model.pad(torch.from_numpy(resize_frames(frames, model_size)).permute(0, 3, 1, 2).float().div(255))
        objects = torch.from_numpy(split.masks(name, split.object_ids(name), list(range(len(frames)))))
        objects = objects[objects.flatten(1).any(1)]  # (M, T, H, W), the objects seen in the video
        shown = objects.flatten(2).any(-1)  # (M, T)
        first = next(e for e in video.expressions.values() if normalize_text(e.text))
        text = model.encode_text(model.prepare_text([normalize_text(first.text)]))
        fo, clip_features = model.encode_frames(x, text.repeat(len(x)), 1)
        frame_masks = upsample_masks(fo["masks"][-1], model.mask_stride, model_size, size) > 0  # (T, fQ, H, W)
        frame_best = iou(frame_masks.transpose(0, 1)[:, None], objects[None]).max(0).values  # (M, T)
        clip = model.decode_clip(fo["frame_queries"][-1][None], text)
        clip_masks = torch.einsum("qc,tchw->tqhw", clip["mask_embed"][-1, 0], clip_features)
        blobs = model.blob_candidates(clip_masks.transpose(0, 1)[None], clip["logits"][-1].softmax(-1)[..., 0])[0][0]
        clip_stride = x.shape[-1] // clip_features.shape[-1]  # 4: the motion decoder's, with pixel_decoder.fine too
        blobs = upsample_masks(blobs.transpose(0, 1), clip_stride, model_size, size).transpose(0, 1) > 0
        blob_iou = iou(blobs[:, None], objects[None])  # (K, M, T)
        clip_masks = upsample_masks(clip_masks, clip_stride, model_size, size).transpose(0, 1) > 0  # (cQ, T, ...)
        clip_iou = iou(clip_masks[:, None], objects[None])  # (cQ, M, T)
        slot_iou = None
        if fo["peaks"] is not None:
            slots = linked_frame_queries(model, fo, x)
            slots = upsample_masks(slots.transpose(0, 1), model.mask_stride, model_size, size).transpose(0, 1) > 0
            slot_iou = iou(slots[:, None], objects[None])  # (fQ, M, T)
        area = objects.flatten(2).sum(-1).float()
        for m in range(len(objects)):
            seen = shown[m]
            rows["frame queries, best in each frame"].append(float(frame_best[m, seen].mean()))
            small = float(area[m, seen].median()) / min(size) ** 2 < SMALL
            rows[f"frame queries, best in each frame, {'small' if small else 'larger'}"].append(
                float(frame_best[m, seen].mean()))
            rows["clip queries, best in each frame"].append(float(clip_iou[:, m, seen].max(0).values.mean()))
            rows["clip queries, best over the video"].append(float(clip_iou[:, m, seen].mean(-1).max()))
            rows["clip queries' blob tracks, best over the video"].append(float(blob_iou[:, m, seen].mean(-1).max()))
            if slot_iou is not None:
                rows["frame queries linked as objects, best slot over the video"].append(
                    float(slot_iou[:, m, seen].mean(-1).max()))
    return {"run": str(run), "videos": n_videos, "objects": len(rows["frame queries, best in each frame"]),
            "mean IoU": {k: round(float(np.mean(v)), 3) for k, v in rows.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--split-dir", type=Path, default=Path("runs/synth_learning/data/valid_u"))
    parser.add_argument("--videos", type=int, default=25)
    args = parser.parse_args()
    print(json.dumps(frame_and_clip_queries(args.run, args.split_dir, args.videos), indent=1))


if __name__ == "__main__":
    main()

"""Small datasets written in the official layouts, for the readers and the evaluation to read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from rvos.data import rle
from rvos.data.frames import write_frame

DAVIS_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [0] * (768 - 15)


def box_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def write_mevis(root: Path, split: str = "valid_u", size=(24, 32), frames: int = 3, with_masks: bool = True) -> dict:
    """A MeViS split: video 'v1' with objects 1 (a box moving right) and 2 (a box present only in frame 0),
    expressions '0' -> object 1, '1' -> objects 1 and 2 (a union), '2' -> object 2; returns the object masks."""
    h, w = size
    split_dir = root / split
    obj1 = np.stack([box_mask(h, w, 4, 12, 2 + 4 * t, 10 + 4 * t) for t in range(frames)])
    obj2 = np.stack([box_mask(h, w, 14, 22, 20, 30) if t == 0 else np.zeros((h, w), bool) for t in range(frames)])
    rng = np.random.default_rng(0)
    for t in range(frames):
        write_frame(split_dir / "JPEGImages" / "v1" / f"{t:05d}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    exps = {
        "0": {"exp": "the box moving right", "obj_id": [1], "anno_id": [10]},
        "1": {"exp": "both boxes", "obj_id": [1, 2], "anno_id": [10, 11]},
        "2": {"exp": "the box that disappears", "obj_id": [2], "anno_id": [11]},
    }
    if not with_masks:
        exps = {k: {"exp": v["exp"]} for k, v in exps.items()}
    meta = {"videos": {"v1": {"expressions": exps, "vid_id": 0, "frames": [f"{t:05d}" for t in range(frames)]}}}
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "meta_expressions.json").write_text(json.dumps(meta))
    if with_masks:
        masks = {"10": [rle.encode(m) for m in obj1], "11": [rle.encode(m) if m.any() else None for m in obj2]}
        (split_dir / "mask_dict.json").write_text(json.dumps(masks))
    return {"1": obj1, "2": obj2}


def write_mevis_v2(root: Path, split: str = "valid_u", frames: int = 3) -> tuple[Path, Path]:
    """A MeViS v2 split (``meta_expressions_v2.json``): :func:`write_mevis`'s video with two no-target expressions
    added ('3' and '4': no obj_id, no anno_id), and predictions in ``root/pred``: '0' exact, '1' one object's box
    only, '2' empty (a target missed), '3' empty (no target, rightly), '4' a box in frame 1 (no target, wrongly).
    Returns (split folder, prediction folder)."""
    from rvos.data.frames import write_mask_png

    objects = write_mevis(root, split, frames=frames)
    split_dir = root / split
    meta = json.loads((split_dir / "meta_expressions.json").read_text())
    exps = meta["videos"]["v1"]["expressions"]
    exps["3"] = {"exp": "the cat jumping over the boxes", "obj_id": [], "anno_id": []}
    exps["4"] = {"exp": "the third box", "obj_id": [], "anno_id": []}
    (split_dir / "meta_expressions.json").unlink()
    (split_dir / "meta_expressions_v2.json").write_text(json.dumps(meta))
    empty = np.zeros_like(objects["1"])
    wrong = empty.copy()
    wrong[1, 3:9, 20:28] = True
    preds = {"0": objects["1"], "1": objects["2"], "2": empty, "3": empty, "4": wrong}
    for exp_id, masks in preds.items():
        for t in range(frames):
            write_mask_png(root / "pred" / "v1" / exp_id / f"{t:05d}.png", masks[t])
    return split_dir, root / "pred"


def write_ytvos(root: Path, split: str = "train", size=(24, 32), frames: int = 3) -> dict:
    """A Ref-YouTube-VOS split (also the Ref-DAVIS17 converted layout): video 'vid' with objects 1 and 2 in
    palette annotation PNGs; expressions '0' -> object 1, '1' -> object 2."""
    h, w = size
    obj1 = np.stack([box_mask(h, w, 2, 10, 2 + 3 * t, 12 + 3 * t) for t in range(frames)])
    obj2 = np.stack([box_mask(h, w, 12, 20, 16, 28) for _ in range(frames)])
    names = [f"{5 * t:05d}" for t in range(frames)]  # every 5th frame, as Ref-YouTube-VOS annotates
    rng = np.random.default_rng(1)
    for t, name in enumerate(names):
        write_frame(root / split / "JPEGImages" / "vid" / f"{name}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        labels = np.zeros((h, w), np.uint8)
        labels[obj1[t]] = 1
        labels[obj2[t]] = 2
        im = Image.fromarray(labels, mode="P")
        im.putpalette(DAVIS_PALETTE)
        (root / split / "Annotations" / "vid").mkdir(parents=True, exist_ok=True)
        im.save(root / split / "Annotations" / "vid" / f"{name}.png")
    meta = {"videos": {"vid": {"expressions": {"0": {"exp": "a cat walking", "obj_id": "1"},
                                               "1": {"exp": "a dog sitting", "obj_id": "2"}},
                               "frames": names}}}
    (root / "meta_expressions" / split).mkdir(parents=True, exist_ok=True)
    (root / "meta_expressions" / split / "meta_expressions.json").write_text(json.dumps(meta))
    objects = {"1": {"category": "cat", "frames": names}, "2": {"category": "dog", "frames": names}}
    (root / split / "meta.json").write_text(json.dumps({"videos": {"vid": {"objects": objects}}}))
    return {"1": obj1, "2": obj2}


def _save_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(DAVIS_PALETTE[:765] + [224, 224, 192])  # 255 (void) in DAVIS's cream
    im.save(path)


def write_davis(root: Path, results: Path) -> None:
    """A DAVIS 2017 folder (val = 'boxes', 12 frames, 2 objects, void pixels; 'trio', 9 frames, 3 objects, the
    third leaving after frame 4) with the same labels in Annotations and Annotations_unsupervised, and results
    ``results/semi`` (object 3 of 'trio' never predicted; quality that decays over time) and ``results/unsup``
    (proposals in another order than the objects, more of them than objects in 'boxes', fewer in 'trio')."""
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("boxes\ntrio\n")
    semi, unsup = results / "semi", results / "unsup"
    h, w = 40, 56
    for t in range(12):
        gt = np.zeros((h, w), np.uint8)
        gt[box_mask(h, w, 5, 20, 3 + 2 * t, 15 + 2 * t)] = 1
        gt[box_mask(h, w, 24, 36, 30, 44)] = 2
        if 3 <= t <= 6:
            gt[22:24, 28:46] = 255  # void along object 2's top edge
        s = np.zeros((h, w), np.uint8)
        s[box_mask(h, w, 5 + t // 3, 20 + t // 3, 3 + 2 * t, 15 + 2 * t)] = 1  # drifts down: J and F decay
        s[box_mask(h, w, 24 - (t >= 6), 37, 30, 44 + (t >= 6))] = 2
        u = np.zeros((h, w), np.uint8)
        u[box_mask(h, w, 23, 36, 31, 44)] = 1  # proposal 1 follows object 2
        u[box_mask(h, w, 0, 3, 0, 4)] = 2  # a stray proposal
        u[box_mask(h, w, 6, 20, 3 + 2 * t, 14 + 2 * t)] = 3  # proposal 3 follows object 1
        if t == 0:
            u[box_mask(h, w, 36, 40, 0, 10)] = 4
        for folder, labels in ((root / "Annotations" / "480p", gt), (root / "Annotations_unsupervised" / "480p", gt),
                               (semi, s), (unsup, u)):
            _save_labels(folder / "boxes" / f"{t:05d}.png", labels)
    h, w = 36, 48
    for t in range(9):
        gt = np.zeros((h, w), np.uint8)
        gt[box_mask(h, w, 2, 12, 2, 12)] = 1
        gt[box_mask(h, w, 20, 30, 4 + 3 * t, 14 + 3 * t)] = 2
        if t <= 4:
            gt[box_mask(h, w, 4, 16, 30, 40 + t)] = 3
        s = np.zeros((h, w), np.uint8)
        s[gt == 1] = 1
        s[box_mask(h, w, 21, 31, 5 + 3 * t, 15 + 3 * t)] = 2
        u = np.zeros((h, w), np.uint8)
        if t <= 5:
            u[box_mask(h, w, 4, 16, 31, 40)] = 1  # proposal 1 follows object 3, one frame too long
        u[box_mask(h, w, 2, 13, 2, 12)] = 2  # proposal 2 follows object 1
        for folder, labels in ((root / "Annotations" / "480p", gt), (root / "Annotations_unsupervised" / "480p", gt),
                               (semi, s), (unsup, u)):
            _save_labels(folder / "trio" / f"{t:05d}.png", labels)


def write_a2d_sentences(root: Path) -> Path:
    """A2D-Sentences' annotation files in the official layout: ``Release/videoset.csv`` (no header; the 9th column
    is the subset, 0 train / 1 test), ``text_annotations/a2d_missed_videos.txt``, ``text_annotations/
    a2d_annotation.txt`` (video_id, instance_id, query) and per annotated frame an HDF5 file
    ``text_annotations/a2d_annotation_with_instances/<video>/<frame:05d>.h5`` with ``instance`` (ids), ``reMask``
    (one W x H mask per instance, stored transposed; a single instance without the leading axis) and ``reBBox``
    (x1, y1, x2, y2 per column). Videos: ``vid_a`` (test, two instances), ``vid_b`` (test, one instance, missing
    from one frame), ``vid_c`` (train), ``vid_d`` (test but listed as missed)."""
    import h5py

    rows = [("vid_a", 1), ("vid_b", 1), ("vid_c", 0), ("vid_d", 1)]
    (root / "Release").mkdir(parents=True)
    (root / "Release" / "videoset.csv").write_text(
        "".join(f"{v},11,0,1,20,24,30,3,{s}\n" for v, s in rows))
    text = root / "text_annotations"
    text.mkdir()
    (text / "a2d_missed_videos.txt").write_text("vid_d\n")
    (text / "a2d_annotation.txt").write_text(
        "video_id,instance_id,query\n"
        "vid_a,0,the man on the left\nvid_a,1,the dog running\nvid_b,2,a bird flying\nvid_c,0,a car\n"
        "vid_d,0,a ball\n")
    h, w = 20, 24
    frames = {"vid_a": {5: [0, 1], 17: [1, 0]}, "vid_b": {3: [2], 9: [4]}, "vid_c": {1: [0]}, "vid_d": {2: [0]}}
    for video, by_frame in frames.items():
        folder = text / "a2d_annotation_with_instances" / video
        folder.mkdir(parents=True)
        for frame, ids in by_frame.items():
            masks = [box_mask(h, w, 2 + 3 * k + frame % 3, 9 + 3 * k, 1 + 4 * k, 8 + 5 * k + frame % 4) for k in range(len(ids))]
            boxes = [[float(m.nonzero()[1].min()), float(m.nonzero()[0].min()), float(m.nonzero()[1].max()),
                      float(m.nonzero()[0].max())] for m in masks]
            with h5py.File(folder / f"{frame:05d}.h5", "w") as f:
                f["instance"] = np.array(ids, dtype=np.float64)
                stacked = np.stack([m.T for m in masks]).astype(np.uint8)
                f["reMask"] = stacked if len(ids) > 1 else stacked[0]
                f["reBBox"] = np.array(boxes, dtype=np.float64).T  # (4, n)
    return root


def write_jhmdb_sentences(root: Path) -> Path:
    """JHMDB-Sentences in the official layout: ``jhmdb_annotation.txt`` (video_id, query),
    ``Rename_Images/<action>/<video>/<frame:05d>.png`` (from 1), ``puppet_mask/<action>/<video>/puppet_mask.mat``
    (``part_mask``, H x W x T) and MTTR's ``jhmdb_sentences_samples_metadata.json`` (3 frames per video, paths
    written ``./jhmdb_sentences/...``). ``clip_a`` (pullup) has 6 frames but 5 masks; ``clip_b`` (walk) has 4, its
    second mask empty."""
    from scipy.io import savemat

    h, w = 18, 22
    videos = {"clip_a": ("pullup", 6, 5, "man in black pulling up"), "clip_b": ("walk", 4, 4, "a woman walking")}
    drawn = {"clip_a": [1, 3, 5], "clip_b": [2, 3, 4]}
    root.mkdir(parents=True)
    (root / "jhmdb_annotation.txt").write_text(
        "video_id,query\n" + "".join(f"{v},{s}\n" for v, (_, _, _, s) in videos.items()))
    rng = np.random.default_rng(3)
    samples = []
    for video, (action, n_frames, n_masks, sentence) in videos.items():
        for t in range(1, n_frames + 1):
            path = root / "Rename_Images" / action / video / f"{t:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        masks = np.stack([box_mask(h, w, 2 + t, 12 + t % 3, 3 + 2 * t, 15) if (video, t) != ("clip_b", 1)
                          else np.zeros((h, w), bool) for t in range(n_masks)], axis=-1).astype(np.uint8)
        (root / "puppet_mask" / action / video).mkdir(parents=True)
        savemat(root / "puppet_mask" / action / video / "puppet_mask.mat", {"part_mask": masks})
        for t in drawn[video]:
            samples.append([video, f"./jhmdb_sentences/Rename_Images/{action}/{video}/{t:05d}.png",
                            f"./jhmdb_sentences/puppet_mask/{action}/{video}/puppet_mask.mat", n_masks, sentence])
    (root / "jhmdb_sentences_samples_metadata.json").write_text(json.dumps(samples))
    return root


def write_refdavis(root: Path, frames: int = 4, size=(24, 32)) -> tuple[Path, Path, dict]:
    """Ref-DAVIS17 as ReferFormer converts it (``ref/valid``: Ref-YouTube-VOS layout, 4 expressions per object in
    the order anno1-first, anno1-full, anno2-first, anno2-full) beside its DAVIS folder (``davis``: one val
    sequence 'pair', objects 1 and 2); returns (split folder, DAVIS folder, {obj_id: masks (T, H, W)})."""
    h, w = size
    objects = {1: np.stack([box_mask(h, w, 2, 10, 2 + 3 * t, 12 + 3 * t) for t in range(frames)]),
               2: np.stack([box_mask(h, w, 12, 22, 16, 30) for _ in range(frames)])}
    names = [f"{t:05d}" for t in range(frames)]
    davis, split = root / "davis", root / "ref" / "valid"
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    (davis / "ImageSets" / "2017" / "val.txt").write_text("pair\n")
    rng = np.random.default_rng(2)
    for t, name in enumerate(names):
        labels = np.zeros((h, w), np.uint8)
        for obj_id, masks in objects.items():
            labels[masks[t]] = obj_id
        for folder in ("Annotations", "Annotations_unsupervised"):
            _save_labels(davis / folder / "480p" / "pair" / f"{name}.png", labels)
        _save_labels(split / "Annotations" / "pair" / f"{name}.png", labels)
        write_frame(split / "JPEGImages" / "pair" / f"{name}.jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    texts = {1: "the box moving right", 2: "the box at the bottom"}
    expressions = {str(4 * (o - 1) + k): {"exp": f"{texts[o]} ({k})", "obj_id": str(o)} for o in (1, 2)
                   for k in range(4)}
    (root / "ref" / "meta_expressions" / "valid").mkdir(parents=True)
    (root / "ref" / "meta_expressions" / "valid" / "meta_expressions.json").write_text(
        json.dumps({"videos": {"pair": {"expressions": expressions, "frames": names}}}))
    return split, davis, objects

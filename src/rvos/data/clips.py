"""Training clips: a seeded, endless stream of (frames, objects, sentence) samples drawn from a split. A sample
holds the masks of every annotated object of the video in the sampled frames (objects absent from all of them
left out), which of them the sentence refers to, and the video and expression ids.

The stream is indexed by a global position. With ``expressions_per_clip`` = 1, position p is expression
``perm_e[p mod N]`` of epoch ``e = p // N`` (a seeded permutation of the split's N expressions per epoch), and its
frame sampling and augmentation draw from a generator seeded by ``(seed, p)``. With k > 1, k consecutive
positions form a group: one video (a seeded permutation of the videos per epoch), one sampled clip and one
augmentation, and k different expressions of it, so the batch shows the same frames with different sentences and
different targets: only the sentence can tell the model which is which. (Meant to make a model trained from
scratch read the sentence; on the synthetic benchmark it did not raise J&F, see benchmarks/results.)

Step s of training with a global batch B consumes positions s*B .. s*B+B-1, however they are split over
processes and gradient-accumulation micro-batches, so a run is the same with 1 or N processes and resumes
exactly from any step.

With ``track_clips`` = n, each sample also carries n more clips of the split's videos (their frames and annotated
objects, no sentence) for a track grounding head to learn from (``data.track_clips``): clip k of position p is video
``perm'_e[q mod V]`` with ``q = p * n + k`` (a second seeded permutation of the split's V videos per epoch
``e = q // V``), sampled and augmented from a generator seeded by ``(seed, 5, q)``, so these clips go through the
videos in turn, in another order than the samples, and resume with them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from rvos.data.sampling import sample_indices
from rvos.data.schema import normalize_text
from rvos.data.splits import ReferringSplit
from rvos.data.transforms import ClipTransform, swap_left_right
from rvos.errors import DataError


class ClipDataset(Dataset):
    def __init__(self, split: ReferringSplit, num_frames: int, sampling: str, frame_range: int,
                 transform: ClipTransform, seed: int = 0, expressions_per_clip: int = 1, track_clips: int = 0):
        if not split.has_masks:
            raise DataError(f"{split.split_dir} has no masks: it cannot be trained on")
        self.split = split
        self.samples = [(v, e) for v, e in split.samples() if normalize_text(split.video(v).expressions[e].text)]
        if not self.samples:
            raise DataError(f"{split.split_dir} has no expressions to train on")
        self.num_frames, self.sampling, self.frame_range = num_frames, sampling, frame_range
        self.transform = transform
        self.seed = seed
        self.group = expressions_per_clip
        if track_clips < 0:
            raise DataError(f"data.track_clips: expected a number of clips >= 0, got {track_clips}")
        self.track_clips = track_clips
        self.videos = sorted({v for v, _ in self.samples})
        self.by_video = {v: [e for vv, e in self.samples if vv == v] for v in self.videos}

    def __len__(self) -> int:  # one epoch; positions beyond it index later epochs
        return len(self.samples)

    def sample_at(self, position: int) -> tuple[str, str, np.random.Generator]:
        """(video, expression, the generator of its clip sampling and augmentation) at a global position."""
        if self.group == 1:
            epoch, offset = divmod(position, len(self.samples))
            perm = np.random.default_rng([self.seed, 1, epoch]).permutation(len(self.samples))
            return (*self.samples[perm[offset]], np.random.default_rng([self.seed, 2, position]))
        group, member = divmod(position, self.group)
        epoch, offset = divmod(group, len(self.videos))
        video = self.videos[np.random.default_rng([self.seed, 1, epoch]).permutation(len(self.videos))[offset]]
        expressions = self.by_video[video]
        pick = np.random.default_rng([self.seed, 3, group]).permutation(len(expressions))
        exp_id = expressions[pick[member % len(expressions)]]  # distinct while the video has enough of them
        return video, exp_id, np.random.default_rng([self.seed, 2, group])

    def read_clip(self, video: str, rng: np.random.Generator) -> dict:
        """A clip of ``video`` sampled and augmented from ``rng``: its frames (T, 3, H, W) uint8, the masks of its
        annotated objects visible in them (M, T, H, W) bool (objects absent from every sampled frame left out), their
        mask keys, and whether it was flipped."""
        indices = sample_indices(self.sampling, len(self.split.video(video)), self.num_frames, self.frame_range, rng)
        frames = self.split.read_frames(video, indices)
        ids = self.split.object_ids(video)
        objects = self.split.masks(video, ids, indices)  # (N, T, H, W), every annotated object
        n, t_len = objects.shape[:2]
        flat = objects.reshape(n * t_len, *objects.shape[2:]) if n else None
        frames, flat, flipped = self.transform.apply(frames, flat, rng)
        objects = (flat.reshape(n, t_len, *flat.shape[1:]) if n
                   else np.zeros((0, t_len, *frames.shape[1:3]), dtype=bool))
        visible = objects.reshape(n, -1).any(axis=1)  # objects absent from every sampled frame are left out
        return {"frames": torch.from_numpy(frames).permute(0, 3, 1, 2),
                "instances": torch.from_numpy(np.ascontiguousarray(objects[visible])),
                "instance_ids": tuple(a for a, v in zip(ids, visible) if v), "flipped": flipped, "video": video}

    def track_clip(self, q: int) -> dict:
        """Clip ``q`` of the stream of clips read for a track head (see the module's docstring)."""
        epoch, offset = divmod(q, len(self.videos))
        video = self.videos[np.random.default_rng([self.seed, 4, epoch]).permutation(len(self.videos))[offset]]
        return self.read_clip(video, np.random.default_rng([self.seed, 5, q]))

    def __getitem__(self, position: int) -> dict:
        video, exp_id, rng = self.sample_at(position)
        v = self.split.video(video)
        clip = self.read_clip(video, rng)
        referred = torch.tensor([a in v.expressions[exp_id].anno_ids for a in clip["instance_ids"]], dtype=torch.bool)
        text = normalize_text(v.expressions[exp_id].text)
        item = {
            "frames": clip["frames"],  # (T, 3, H, W) uint8
            "instances": clip["instances"],  # (M, T, H, W) bool
            "referred": referred,  # (M,) bool
            "instance_ids": clip["instance_ids"],  # (M,) the objects' mask keys (anno_ids)
            "text": swap_left_right(text) if clip["flipped"] else text,
            "flipped": clip["flipped"],  # left and right swapped: in the frames, the masks and the text
            "video": video,
            "expression": exp_id,
            "position": position,
        }
        if self.track_clips:
            item["track_clips"] = [self.track_clip(position * self.track_clips + k) for k in range(self.track_clips)]
        return item


def pad_clips(items: list[dict]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Clips' frames (T, 3, H, W) and objects (M, T, H, W) -> the frames (N, T, 3, H', W') and objects padded at the
    bottom / right to the largest size among them."""
    h = max(it["frames"].shape[-2] for it in items)
    w = max(it["frames"].shape[-1] for it in items)
    frames = torch.zeros(len(items), items[0]["frames"].shape[0], 3, h, w, dtype=torch.uint8)
    instances = []
    for i, it in enumerate(items):
        fh, fw = it["frames"].shape[-2:]
        frames[i, :, :, :fh, :fw] = it["frames"]
        obj = torch.zeros(it["instances"].shape[0], it["instances"].shape[1], h, w, dtype=torch.bool)
        obj[..., :fh, :fw] = it["instances"]
        instances.append(obj)
    return frames, instances


def collate(items: list[dict]) -> dict:
    """Pad frames and masks at the bottom / right to the largest size in the batch (the clips read for a track head,
    ``track_clips``, among themselves: a dict of their ``frames``, ``instances``, ``instance_ids``, ``flipped`` and
    ``videos``)."""
    frames, instances = pad_clips(items)
    batch = {"frames": frames, "instances": instances, "referred": [it["referred"] for it in items],
             "instance_ids": [it["instance_ids"] for it in items],
             "texts": [it["text"] for it in items], "flipped": [it["flipped"] for it in items],
             "videos": [it["video"] for it in items], "expressions": [it["expression"] for it in items],
             "positions": [it["position"] for it in items]}
    extra = [c for it in items for c in it.get("track_clips", [])]
    if extra:
        frames, instances = pad_clips(extra)
        batch["track_clips"] = {"frames": frames, "instances": instances,
                                "instance_ids": [c["instance_ids"] for c in extra],
                                "flipped": [c["flipped"] for c in extra], "videos": [c["video"] for c in extra]}
    return batch


class StepBatches(torch.utils.data.Sampler):
    """Positions of this process's micro-batches, step after step from ``start_step``: step s holds global
    positions s*B .. s*B+B-1, cut into ``accumulation`` micro-batches and then across ``world_size`` processes."""

    def __init__(self, batch_size: int, accumulation: int, rank: int, world_size: int, start_step: int = 0,
                 num_steps: int | None = None):
        per = batch_size // (accumulation * world_size)
        if per * accumulation * world_size != batch_size:
            raise DataError(f"train.batch_size {batch_size} must be divisible by train.accumulation x processes "
                            f"({accumulation} x {world_size})")
        self.batch_size, self.accumulation, self.rank, self.world_size = batch_size, accumulation, rank, world_size
        self.per, self.start_step, self.num_steps = per, start_step, num_steps

    def __iter__(self):
        step = self.start_step
        while self.num_steps is None or step < self.start_step + self.num_steps:
            for micro in range(self.accumulation):
                first = step * self.batch_size + micro * (self.batch_size // self.accumulation) + self.rank * self.per
                yield list(range(first, first + self.per))
            step += 1

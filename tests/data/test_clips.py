import pytest
import torch

from rvos.data.clips import ClipDataset, StepBatches, collate
from rvos.data.splits import open_split
from rvos.data.transforms import ClipTransform
from rvos.errors import DataError


def dataset(root, group=1, seed=0, track_clips=0):
    transform = ClipTransform(48, 80, flip_prob=0.5, brightness=0.2, contrast=0.2, saturation=0.2)
    return ClipDataset(open_split(root / "train"), 4, "global", 8, transform, seed=seed, expressions_per_clip=group,
                       track_clips=track_clips)


def test_items_are_a_function_of_their_position(synth_root):
    a, b = dataset(synth_root), dataset(synth_root)
    for p in (0, 5, 123):
        x, y = a[p], b[p]
        assert x["text"] == y["text"] and torch.equal(x["frames"], y["frames"])
        assert torch.equal(x["instances"], y["instances"]) and torch.equal(x["referred"], y["referred"])
    assert x["frames"].shape == (4, 3, 48, 80) and x["instances"].dtype == torch.bool
    # one epoch visits every expression once
    n = len(a)
    assert sorted(a.sample_at(p)[:2] for p in range(n)) == sorted(a.samples)


def test_grouped_items_share_the_clip_and_differ_in_the_sentence(synth_root):
    d = dataset(synth_root, group=2)
    differ = 0
    for g in range(6):
        x, y = d[2 * g], d[2 * g + 1]
        assert torch.equal(x["frames"], y["frames"])
        differ += x["text"] != y["text"]
    assert differ >= 5  # videos of one expression repeat it


def test_items_carry_every_annotated_object_and_which_are_referred(synth_root):
    d = dataset(synth_root)
    split = d.split
    for p in range(40):
        item = d[p]
        video = split.video(item["video"])
        exp = video.expressions[item["expression"]]
        assert item["text"] == " ".join(exp.text.lower().split()) or "left" in exp.text or "right" in exp.text
        instances, referred = item["instances"], item["referred"]
        assert instances.shape[0] == referred.shape[0] <= len(split.object_ids(item["video"]))
        assert instances.flatten(1).any(1).all()  # objects absent from every sampled frame are dropped
        assert int(referred.sum()) <= len(exp.anno_ids)
        # each instance's anno_id, by which the video's other sentences refer to it
        assert [a in exp.anno_ids for a in item["instance_ids"]] == referred.tolist()
    # the videos have several objects: most items carry objects the sentence does not refer to
    assert sum(int((~d[p]["referred"]).sum() > 0) for p in range(40)) > 20


def test_an_items_referred_masks_are_its_expressions_target(synth_root):
    d = ClipDataset(open_split(synth_root / "train"), 4, "global", 8, ClipTransform(48, 80, flip_prob=0.0), seed=0)
    for p in range(10):
        item = d[p]
        indices = d.sample_at(p)[2]  # the generator: re-derive the frame indices as the dataset does
        from rvos.data.sampling import sample_indices
        video = d.split.video(item["video"])
        idx = sample_indices("global", len(video), 4, 8, indices)
        target = torch.from_numpy(d.split.target_masks(item["video"], item["expression"], idx))
        union = item["instances"][item["referred"]].any(0)
        resized = torch.nn.functional.interpolate(target[None].float(), size=union.shape[-2:], mode="nearest")[0] > 0
        assert (union == resized).float().mean() > 0.98


def test_items_carry_clips_for_a_track_head_that_go_through_the_videos(synth_root):
    plain, d, again = dataset(synth_root), dataset(synth_root, track_clips=2), dataset(synth_root, track_clips=2)
    for p in (0, 7):
        x, y, z = plain[p], d[p], again[p]
        assert "track_clips" not in x
        assert x["text"] == y["text"] and torch.equal(x["frames"], y["frames"])  # the sample is as it was
        assert len(y["track_clips"]) == 2
        for clip, same in zip(y["track_clips"], z["track_clips"]):  # a function of the position
            assert clip["video"] == same["video"] and torch.equal(clip["frames"], same["frames"])
            assert clip["frames"].shape == (4, 3, 48, 80) and clip["instances"].flatten(1).any(1).all()
            assert len(clip["instance_ids"]) == clip["instances"].shape[0] and "text" not in clip
    # an epoch of these clips visits every video once
    assert sorted(d.track_clip(q)["video"] for q in range(len(d.videos))) == d.videos
    batch = collate([d[0], d[1]])
    extra = batch["track_clips"]
    assert extra["frames"].shape == (4, 4, 3, 48, 80) and len(extra["instances"]) == len(extra["videos"]) == 4
    assert extra["videos"][:2] == [c["video"] for c in d[0]["track_clips"]]
    with pytest.raises(DataError, match="track_clips"):
        dataset(synth_root, track_clips=-1)


def test_steps_take_the_same_positions_whatever_the_processes_and_accumulation():
    def positions(world, accumulation, steps=3, start=0):
        per_step = []
        for s in range(start, start + steps):
            step = []
            for rank in range(world):
                it = iter(StepBatches(8, accumulation, rank, world, start_step=s, num_steps=1))
                for _ in range(accumulation):
                    step += next(it)
            per_step.append(sorted(step))
        return per_step

    assert positions(1, 1) == positions(2, 1) == positions(2, 2) == positions(4, 2)
    assert positions(1, 1, start=2)[0] == list(range(16, 24))


def test_collate_pads_to_the_largest_frame():
    common = {"video": "v", "expression": "0", "flipped": False}
    items = [{"frames": torch.ones(2, 3, 10, 12, dtype=torch.uint8), "instances": torch.ones(1, 2, 10, 12, dtype=torch.bool),
              "referred": torch.ones(1, dtype=torch.bool), "instance_ids": ("7",), "text": "a", "position": 0,
              **common},
             {"frames": torch.ones(2, 3, 8, 16, dtype=torch.uint8), "instances": torch.zeros(0, 2, 8, 16, dtype=torch.bool),
              "referred": torch.zeros(0, dtype=torch.bool), "instance_ids": (), "text": "b", "position": 1, **common}]
    batch = collate(items)
    assert batch["frames"].shape == (2, 2, 3, 10, 16)
    assert batch["instances"][0].shape == (1, 2, 10, 16) and batch["instances"][1].shape == (0, 2, 10, 16)
    assert batch["frames"][1, :, :, 8:].sum() == 0 and not batch["instances"][0][..., 12:].any()
    assert batch["videos"] == ["v", "v"] and batch["expressions"] == ["0", "0"]
    assert batch["instance_ids"] == [("7",), ()] and batch["flipped"] == [False, False]

import torch

from rvos.data.clips import ClipDataset, StepBatches, collate
from rvos.data.splits import open_split
from rvos.data.transforms import ClipTransform


def dataset(root, group=1, seed=0):
    transform = ClipTransform(48, 80, flip_prob=0.5, brightness=0.2, contrast=0.2, saturation=0.2)
    return ClipDataset(open_split(root / "train"), 4, "global", 8, transform, seed=seed, expressions_per_clip=group)


def test_items_are_a_function_of_their_position(synth_root):
    a, b = dataset(synth_root), dataset(synth_root)
    for p in (0, 5, 123):
        x, y = a[p], b[p]
        assert x["text"] == y["text"] and torch.equal(x["frames"], y["frames"]) and torch.equal(x["objects"], y["objects"])
    assert x["frames"].shape == (4, 3, 48, 80) and x["objects"].dtype == torch.bool
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


def test_referred_objects_absent_from_the_clip_are_dropped(synth_root):
    d = dataset(synth_root)
    for p in range(40):
        objects = d[p]["objects"]
        assert objects.flatten(1).any(1).all()


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
    items = [{"frames": torch.ones(2, 3, 10, 12, dtype=torch.uint8), "objects": torch.ones(1, 2, 10, 12, dtype=torch.bool),
              "text": "a", "position": 0},
             {"frames": torch.ones(2, 3, 8, 16, dtype=torch.uint8), "objects": torch.zeros(0, 2, 8, 16, dtype=torch.bool),
              "text": "b", "position": 1}]
    batch = collate(items)
    assert batch["frames"].shape == (2, 2, 3, 10, 16)
    assert batch["objects"][0].shape == (1, 2, 10, 16) and batch["objects"][1].shape == (0, 2, 10, 16)
    assert batch["frames"][1, :, :, 8:].sum() == 0 and not batch["objects"][0][..., 12:].any()

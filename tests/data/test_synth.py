import json

import numpy as np
import pytest

from rvos.data.splits import open_split
from rvos.data.synth.generate import SynthSpec, make_video, read_spec, write_benchmark
from rvos.data.synth.language import KINDS
from rvos.errors import DataError


def test_benchmark_is_written_in_the_mevis_layout_with_kinds(synth_root):
    assert read_spec(synth_root) == SynthSpec(train=12, valid_u=6, valid=3, seed=3)
    for name, count in (("train", 12), ("valid_u", 6), ("valid", 3)):
        split = open_split(synth_root / name)
        assert len(split.videos) == count
        assert split.has_masks == (name != "valid")
        assert split.read_frames(next(iter(split.videos)), [0]).shape == (1, 96, 160, 3)
        assert set(split.kinds()) <= set(KINDS)
    valid_meta = json.loads((synth_root / "valid" / "meta_expressions.json").read_text())
    exp = next(iter(next(iter(valid_meta["videos"].values()))["expressions"].values()))
    assert set(exp) == {"exp", "kind"}  # like MeViS valid: no object ids


def test_generation_is_deterministic_for_a_seed(tmp_path):
    spec = SynthSpec(train=2, valid_u=1, valid=1, seed=5)
    write_benchmark(tmp_path / "a", spec, progress=False)
    write_benchmark(tmp_path / "b", spec, progress=False)
    for f in ("train/meta_expressions.json", "train/mask_dict.json", "train/JPEGImages/train_00001/00007.jpg"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    other = make_video(SynthSpec(seed=6), "train", 1)[3]
    assert [e.text for e in other] != [e.text for e in make_video(spec, "train", 1)[3]]


def test_every_expression_target_is_visible_in_some_frame(synth_root):
    for name in ("train", "valid_u"):
        split = open_split(synth_root / name)
        for video, exp_id in split.samples():
            assert split.target_masks(video, exp_id).any(), (video, exp_id)


def test_all_kinds_occur_and_motion_decided_targets_have_lookalikes_that_move_differently():
    spec = SynthSpec()
    kinds, checked = set(), 0
    for index in range(40):
        frames, objects, masks, expressions = make_video(spec, "train", index)
        by_id = {o.obj_id: o for o in objects}
        for exp in expressions:
            kinds.add(exp.kind)
            if exp.kind != "motion-decided":
                continue
            (target,) = [by_id[i] for i in exp.obj_ids]
            lookalikes = [o for o in objects if o is not target and o.appearance == target.appearance]
            assert lookalikes, exp
            # the look-alikes' trajectories really differ from the target's, and so do their motion facts
            for other in lookalikes:
                assert np.abs(other.centers - other.centers[0] - (target.centers - target.centers[0])).max() > 3
                assert other.motion.facts() != target.motion.facts()
            checked += 1
    assert kinds == set(KINDS)
    assert checked >= 10


def test_objects_leave_and_reenter_and_occlude(synth_root):
    split = open_split(synth_root / "train")
    masks = json.loads((synth_root / "train" / "mask_dict.json").read_text())
    reentered = [a for a, rles in masks.items()
                 if any(r is None for r in rles) and rles[0] is not None and rles[-1] is not None]
    assert reentered, "some object should leave the picture and come back"
    spec = SynthSpec(seed=3)
    occluded = 0
    for index in range(12):
        _, objects, visible, _ = make_video(spec, "train", index)
        areas = visible.sum(axis=(2, 3))  # (objects, T) visible pixels
        occluded += int((np.diff(areas, axis=1) != 0).any(axis=1)[[o.motion.name == "static" for o in objects]].any())
    assert split.samples()
    assert occluded > 0, "a static object's visible area should change when another passes in front of it"


def test_existing_benchmark_is_kept_unless_overwrite(tmp_path):
    spec = SynthSpec(train=1, valid_u=1, valid=1)
    write_benchmark(tmp_path, spec, progress=False)
    before = (tmp_path / "train" / "meta_expressions.json").read_bytes()
    with pytest.raises(DataError, match="already holds a dataset"):
        write_benchmark(tmp_path, SynthSpec(train=1, valid_u=1, valid=1, seed=9), progress=False)
    assert (tmp_path / "train" / "meta_expressions.json").read_bytes() == before
    write_benchmark(tmp_path, SynthSpec(train=1, valid_u=1, valid=1, seed=9), overwrite=True, progress=False)
    assert (tmp_path / "train" / "meta_expressions.json").read_bytes() != before


def test_bad_settings_are_rejected():
    with pytest.raises(DataError, match="frames"):
        SynthSpec(frames=1).validate()
    with pytest.raises(DataError, match="32x32"):
        SynthSpec(height=16).validate()

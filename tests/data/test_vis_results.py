import json

import numpy as np
import pytest
from layouts import box_mask, write_mevis

from rvos.data import rle
from rvos.data.splits import open_split
from rvos.data.vis_results import VisInstances
from rvos.errors import DataError

H, W = 24, 32  # the size write_mevis gives video 'v1' (3 frames)


def vis_videos(v1_frames=3, v1_size=(H, W)):
    return {"videos": [
        {"id": 7, "file_names": [f"v1/{t:05d}.jpg" for t in range(v1_frames)], "height": v1_size[0],
         "width": v1_size[1], "length": v1_frames},
        {"id": 9, "file_names": ["quiet/a.jpg", "quiet/b.jpg"], "height": 10, "width": 12, "length": 2},
    ], "categories": [{"id": 1, "name": "box"}]}


def track(t0):
    """Three frames of a box that moves right, starting at column ``t0``."""
    return np.stack([box_mask(H, W, 2 + t0 % 5, 10, t0 + 3 * t, t0 + 3 * t + 6) for t in range(3)])


TRACKS = {"a": track(1), "b": track(5), "c": track(9), "d": track(13)}


def results():
    """Scores b 0.9 > a 0.5 = c 0.5 (a first in the file) > d 0.1; c absent from frame 1."""
    def entry(name, score, absent=()):
        segs = [None if t in absent else rle.encode(m) for t, m in enumerate(TRACKS[name])]
        return {"video_id": 7, "score": score, "category_id": 1, "segmentations": segs}
    return [entry("d", 0.1), entry("a", 0.5), entry("b", 0.9), entry("c", 0.5, absent=(1,))]


def write(tmp_path, res=None, videos=None):
    rp, vp = tmp_path / "results.json", tmp_path / "valid.json"
    rp.write_text(json.dumps(results() if res is None else res))
    vp.write_text(json.dumps(vis_videos() if videos is None else videos))
    return rp, vp


def test_masks_are_the_top_instances_by_score_ties_in_file_order(tmp_path):
    inst = VisInstances.read(*write(tmp_path))
    assert inst.video_names == ("v1", "quiet")
    assert inst.num_instances("v1") == 4
    masks = inst.masks("v1")
    assert masks.shape == (4, 3, H, W) and masks.dtype == bool
    c = TRACKS["c"].copy()
    c[1] = False  # null in frame 1: an empty mask
    np.testing.assert_array_equal(masks, np.stack([TRACKS["b"], TRACKS["a"], c, TRACKS["d"]]))
    np.testing.assert_allclose(inst.scores("v1"), [0.9, 0.5, 0.5, 0.1])
    top2 = inst.masks("v1", top=2)
    np.testing.assert_array_equal(top2, np.stack([TRACKS["b"], TRACKS["a"]]))
    assert inst.masks("v1", top=None).shape[0] == 4
    assert inst.masks("v1", top=0).shape == (0, 3, H, W)


def test_frame_selection_decodes_those_frames_in_the_order_asked(tmp_path):
    inst = VisInstances.read(*write(tmp_path))
    masks = inst.masks("v1", frames=[2, 1], top=3)
    assert masks.shape == (3, 2, H, W)
    np.testing.assert_array_equal(masks[0], TRACKS["b"][[2, 1]])
    np.testing.assert_array_equal(masks[1], TRACKS["a"][[2, 1]])
    np.testing.assert_array_equal(masks[2, 0], TRACKS["c"][2])
    assert not masks[2, 1].any()  # c is null in frame 1
    with pytest.raises(IndexError, match="frame index 3"):
        inst.masks("v1", frames=[3])


def test_video_without_instances_has_no_masks_at_its_size(tmp_path):
    inst = VisInstances.read(*write(tmp_path))
    assert inst.num_instances("quiet") == 0
    assert inst.masks("quiet").shape == (0, 2, 10, 12)
    assert inst.masks("quiet", frames=[1]).shape == (0, 1, 10, 12)
    assert inst.scores("quiet").shape == (0,)
    assert inst.video("quiet").frames == ("a", "b")
    with pytest.raises(DataError, match="no video 'elsewhere'"):
        inst.masks("elsewhere")


def test_corrupt_counts_are_found_only_when_that_video_is_decoded(tmp_path):
    bad = {"video_id": 9, "score": 0.3, "category_id": 1,
           "segmentations": [None, {"size": [10, 12], "counts": "!!not-rle"}]}
    inst = VisInstances.read(*write(tmp_path, res=results() + [bad]))
    assert inst.masks("v1").shape == (4, 3, H, W)  # another video decodes
    assert inst.masks("quiet", frames=[0]).shape == (1, 1, 10, 12)  # only the asked-for frame is decoded
    with pytest.raises(DataError, match=r"results\.json, result 4 \(video_id 9, video 'quiet'\), frame 1: corrupt"):
        inst.masks("quiet")
    with pytest.raises(DataError, match="result 4 .*frame 1: corrupt RLE counts"):
        inst.check_masks()


def test_counts_that_do_not_cover_the_frame_are_an_error(tmp_path):
    res = results()
    res[1]["segmentations"][2] = {"size": [H, W], "counts": [5, 10]}
    inst = VisInstances.read(*write(tmp_path, res=res))
    message = rf"result 1 \(video_id 7, video 'v1'\), frame 2: .*cover 15 pixels, expected {H * W}"
    with pytest.raises(DataError, match=message):
        inst.masks("v1")


def test_check_against_a_split_with_the_same_videos(tmp_path):
    write_mevis(tmp_path / "mevis", frames=3)
    split = open_split(tmp_path / "mevis" / "valid_u")
    VisInstances.read(*write(tmp_path)).check_against(split)  # 'quiet' has no instance and is not in the split


def test_check_against_a_split_without_masks_reads_the_frame_size(tmp_path):
    write_mevis(tmp_path / "mevis", split="valid", frames=3, with_masks=False)
    VisInstances.read(*write(tmp_path)).check_against(open_split(tmp_path / "mevis" / "valid"))


@pytest.mark.parametrize("frames, size, message", [
    (4, (H, W), r"'v1' \(video_id 7\) has 3 frames in .*valid\.json but 4 in the split"),
    (3, (H, 40), rf"'v1' \(video_id 7\) is {H}x{W} \(height x width\) in .*valid\.json but {H}x40 in the split"),
])
def test_check_against_names_the_video_and_what_differs(tmp_path, frames, size, message):
    write_mevis(tmp_path / "mevis", frames=frames, size=size)
    with pytest.raises(DataError, match=message):
        VisInstances.read(*write(tmp_path)).check_against(open_split(tmp_path / "mevis" / "valid_u"))


def test_check_against_rejects_a_video_with_instances_outside_the_split(tmp_path):
    write_mevis(tmp_path / "mevis", frames=3)
    extra = {"video_id": 9, "score": 0.3, "category_id": 1, "segmentations": [None, None]}
    inst = VisInstances.read(*write(tmp_path, res=results() + [extra]))
    with pytest.raises(DataError, match="video 'quiet' \\(video_id 9\\) has instances but is not in the split"):
        inst.check_against(open_split(tmp_path / "mevis" / "valid_u"))


def videos_with(**changes):
    videos = vis_videos()
    videos["videos"][0].update(changes)
    return videos


def result_with(index=1, **changes):
    res = results()
    res[index].update(changes)
    return res


def segs_with(frame, seg):
    res = results()
    res[1]["segmentations"][frame] = seg
    return res


@pytest.mark.parametrize("res, videos, message", [
    ({"annotations": []}, None, r"results\.json: expected a list of results"),
    (None, [], r"valid\.json: expected a VIS dataset file, an object with a 'videos' list"),
    (None, {"videos": [{"id": 7}]}, r"valid\.json, video 0 \(id 7\): 'file_names' must be a non-empty list"),
    (None, {"videos": [{"id": "7"}]}, r"valid\.json, video 0: 'id' must be an integer"),
    (None, videos_with(file_names=["v1/0.jpg", "v2/1.jpg", "v1/2.jpg"]),
     r"video 0 \(id 7\): 'file_names' span several folders \(v1, v2\)"),
    (None, videos_with(file_names=["0.jpg", "1.jpg", "2.jpg"]), r"video 0 \(id 7\): 'file_names' have no folder"),
    (None, videos_with(height="24"), r"video 0 \(id 7\): 'height' and 'width' must be positive integers"),
    (None, {"videos": vis_videos()["videos"] * 2}, r"video 2 \(id 7\): id 7 is repeated"),
    (None, {"videos": [vis_videos()["videos"][0], dict(vis_videos()["videos"][0], id=8)]},
     r"video 1 \(id 8\): video 'v1' is also video id 7"),
    (result_with(video_id=3), None, r"results\.json, result 1 \(video_id 3\): no video with this id in .*valid\.json"),
    (result_with(video_id=None), None, r"result 1 \(video_id None\): 'video_id' must be an integer"),
    (result_with(score="high"), None, r"result 1 \(video_id 7, video 'v1'\): 'score' must be a finite number, got 'hi"),
    (result_with(score=None), None, r"result 1 \(video_id 7, video 'v1'\): 'score' must be a finite number"),
    (result_with(segmentations=[None, None]), None,
     r"result 1 \(video_id 7, video 'v1'\): 'segmentations' must be a list of 3 RLEs or nulls .* got 2 entries"),
    (result_with(segmentations=None), None, r"result 1 .*'segmentations' must be a list of 3 .* got NoneType"),
    (segs_with(2, rle.encode(np.zeros((H, W + 1), bool))), None,
     (rf"result 1 \(video_id 7, video 'v1'\), frame 2: RLE size \[{H}, {W + 1}\] differs from the video's "
      rf"height and width \[{H}, {W}\]")),
    (segs_with(0, {"counts": "abc"}), None, r"result 1 \(video_id 7, video 'v1'\), frame 0: expected an RLE"),
    (segs_with(0, [1, 2]), None, r"result 1 \(video_id 7, video 'v1'\), frame 0: expected an RLE"),
    (["x"], None, r"results\.json, result 0: expected an object"),
])
def test_bad_files_name_the_entry_and_what_is_wrong(tmp_path, res, videos, message):
    with pytest.raises(DataError, match=message):
        VisInstances.read(*write(tmp_path, res=res, videos=videos))


def test_missing_unreadable_and_invalid_json(tmp_path):
    rp, vp = write(tmp_path)
    with pytest.raises(DataError, match=r"VIS results file: .*nope\.json does not exist"):
        VisInstances.read(tmp_path / "nope.json", vp)
    with pytest.raises(DataError, match=r"VIS dataset file: .*nope\.json does not exist"):
        VisInstances.read(rp, tmp_path / "nope.json")
    with pytest.raises(DataError, match="VIS dataset file: .* cannot be read"):
        VisInstances.read(rp, tmp_path)  # a folder
    rp.write_text('[{"video_id": 7,')
    with pytest.raises(DataError, match=r"VIS results file: .*results\.json is not valid JSON"):
        VisInstances.read(rp, vp)

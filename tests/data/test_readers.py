import json
import shutil

import numpy as np
import pytest
from layouts import write_mevis, write_ytvos

from rvos.data.splits import MeViSSplit, YTVOSSplit, open_split
from rvos.errors import DataError


def test_mevis_reader_gives_the_union_of_an_expressions_objects(tmp_path):
    objects = write_mevis(tmp_path)
    split = open_split(tmp_path / "valid_u")
    assert isinstance(split, MeViSSplit) and split.has_masks
    assert split.samples() == [("v1", "0"), ("v1", "1"), ("v1", "2")]
    video = split.video("v1")
    assert video.frames == ("00000", "00001", "00002")
    assert video.expressions["1"].anno_ids == ("10", "11") and video.expressions["1"].obj_ids == ("1", "2")
    np.testing.assert_array_equal(split.target_masks("v1", "0"), objects["1"])
    np.testing.assert_array_equal(split.target_masks("v1", "1"), objects["1"] | objects["2"])
    # object 2 is absent (null RLE) after frame 0
    np.testing.assert_array_equal(split.target_masks("v1", "2", [1, 2]), np.zeros((2, 24, 32), bool))
    # the fast per-frame targets decode to the same masks
    for t, target in enumerate(split.frame_targets("v1", "1")):
        np.testing.assert_array_equal(target.to_array(), objects["1"][t] | objects["2"][t])
    assert split.read_frames("v1", [0, 2]).shape == (2, 24, 32, 3)


def test_mevis_valid_split_without_masks_reads_but_has_no_targets(tmp_path):
    write_mevis(tmp_path, split="valid", with_masks=False)
    split = open_split(tmp_path / "valid")
    assert not split.has_masks
    assert split.video("v1").expressions["0"].anno_ids == ()
    with pytest.raises(DataError, match="not annotated"):
        split.target_masks("v1", "0")


def test_ytvos_reader_selects_objects_by_palette_index(tmp_path):
    objects = write_ytvos(tmp_path, "train")
    split = open_split(tmp_path / "train")
    assert isinstance(split, YTVOSSplit) and split.has_masks
    assert split.video("vid").frames == ("00000", "00005", "00010")
    np.testing.assert_array_equal(split.target_masks("vid", "0"), objects["1"])
    np.testing.assert_array_equal(split.target_masks("vid", "1", [2]), objects["2"][2:])


def test_ref_davis_converted_layout_reads_like_ytvos(tmp_path):
    # ReferFormer's conversion: ref-davis/{valid/{JPEGImages,Annotations}, meta_expressions/valid/...}
    objects = write_ytvos(tmp_path / "ref-davis", "valid")
    (tmp_path / "ref-davis" / "valid" / "meta.json").unlink()  # the converted meta.json is not needed to read
    split = open_split(tmp_path / "ref-davis" / "valid")
    np.testing.assert_array_equal(split.target_masks("vid", "1"), objects["2"])


def test_unknown_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_split(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="meta_expressions.json"):
        open_split(tmp_path / "empty")


# --------------------------------------------------------------------------- malformed inputs


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_bad_json_names_the_file(tmp_path):
    write_mevis(tmp_path)
    (tmp_path / "valid_u" / "meta_expressions.json").write_text('{"videos": {')
    with pytest.raises(DataError, match=r"meta_expressions.json is not valid JSON"):
        open_split(tmp_path / "valid_u")


def test_missing_mask_dict_entry_names_the_anno_id(tmp_path):
    write_mevis(tmp_path)
    _edit_json(tmp_path / "valid_u" / "mask_dict.json", lambda d: d.pop("11"))
    split = open_split(tmp_path / "valid_u")
    with pytest.raises(DataError, match=r"mask_dict.json, anno_id 11 .*absent"):
        split.target_masks("v1", "1")
    with pytest.raises(DataError, match="anno_id 11"):
        split.check_masks()


def test_rle_of_the_wrong_size_names_the_entry_and_frame(tmp_path):
    write_mevis(tmp_path)
    _edit_json(tmp_path / "valid_u" / "mask_dict.json", lambda d: d["10"][1].update(size=[20, 32]))
    split = open_split(tmp_path / "valid_u")
    with pytest.raises(DataError, match=r"anno_id 10 .*frame 1: RLE size \[20, 32\] does not match the frame size \[24, 32\]"):
        split.target_masks("v1", "0")


def test_wrong_number_of_rles_is_reported(tmp_path):
    write_mevis(tmp_path)
    _edit_json(tmp_path / "valid_u" / "mask_dict.json", lambda d: d["10"].pop())
    with pytest.raises(DataError, match="expected a list of 3 RLEs"):
        open_split(tmp_path / "valid_u").target_masks("v1", "0")


def test_missing_and_unreadable_frames_name_the_file(tmp_path):
    write_mevis(tmp_path)
    frames = tmp_path / "valid_u" / "JPEGImages" / "v1"
    (frames / "00001.jpg").write_bytes(b"not a jpeg")
    (frames / "00002.jpg").unlink()
    split = open_split(tmp_path / "valid_u")
    with pytest.raises(DataError, match=r"00001.jpg is not a readable image"):
        split.read_frames("v1", [1])
    with pytest.raises(DataError, match=r"00002.jpg does not exist"):
        split.read_frames("v1", [2])
    shutil.rmtree(frames)
    with pytest.raises(DataError, match=r"v1/00000.jpg does not exist"):
        open_split(tmp_path / "valid_u").read_frames("v1", [0])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("videos"), "'videos' mapping"),
        (lambda d: d["videos"]["v1"].update(frames=[]), "video 'v1': 'frames' must be a non-empty list"),
        (lambda d: d["videos"]["v1"]["expressions"]["0"].pop("exp"), "expression '0': expected an object with a string 'exp'"),
        (lambda d: d["videos"]["v1"]["expressions"]["0"].update(anno_id={"a": 1}), "expression '0': expected an id"),
    ],
)
def test_malformed_meta_expressions_names_the_entry(tmp_path, edit, message):
    write_mevis(tmp_path)
    _edit_json(tmp_path / "valid_u" / "meta_expressions.json", edit)
    with pytest.raises(DataError, match=message):
        open_split(tmp_path / "valid_u")


def test_missing_annotation_png_names_the_file(tmp_path):
    write_ytvos(tmp_path, "train")
    (tmp_path / "train" / "Annotations" / "vid" / "00005.png").unlink()
    with pytest.raises(DataError, match=r"Annotations/vid/00005.png does not exist"):
        open_split(tmp_path / "train").target_masks("vid", "0")


# --------------------------------------------------------------------------- annotations without frames


def test_mevis_annotations_alone_give_frame_names_sizes_and_targets(tmp_path):
    objects = write_mevis(tmp_path, size=(20, 36))
    shutil.rmtree(tmp_path / "valid_u" / "JPEGImages")  # only meta_expressions.json and mask_dict.json remain
    split = open_split(tmp_path / "valid_u")
    assert split.frame_size("v1") == (20, 36)  # from the RLEs
    np.testing.assert_array_equal(split.target_masks("v1", "1"), objects["1"] | objects["2"])
    with pytest.raises(DataError, match=r"v1/00000.jpg does not exist"):  # frames are still needed to train
        split.read_frames("v1", [0])


def test_mevis_video_without_any_rle_or_frame_has_no_size_and_says_why(tmp_path):
    write_mevis(tmp_path)
    shutil.rmtree(tmp_path / "valid_u" / "JPEGImages")
    _edit_json(tmp_path / "valid_u" / "mask_dict.json", lambda d: d.update({k: [None] * 3 for k in d}))
    with pytest.raises(DataError, match=r"size cannot be read from mask_dict.json .*absent from every frame"):
        open_split(tmp_path / "valid_u").frame_size("v1")


def test_ytvos_size_comes_from_the_annotations_when_frames_are_absent(tmp_path):
    objects = write_ytvos(tmp_path, "train")
    shutil.rmtree(tmp_path / "train" / "JPEGImages")
    split = open_split(tmp_path / "train")
    assert split.frame_size("vid") == (24, 32)
    np.testing.assert_array_equal(split.target_masks("vid", "0"), objects["1"])

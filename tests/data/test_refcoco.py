"""RefCOCO / RefCOCO+ / RefCOCOg in the layout ReferFormer's convert_refexp_to_coco.py writes, read as 1-frame
videos: masks, sentences and ids, the clip stream, the concatenation of datasets, and bad input."""

import json
import logging

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pycocotools import mask as coco_mask

from rvos.config import Config, DataConfig, from_dict, validate
from rvos.data.clips import ClipDataset, collate
from rvos.data.concat import ConcatSplit, open_splits
from rvos.data.refcoco import RefCOCOSplit, annotation_file
from rvos.data.splits import open_split
from rvos.data.transforms import ClipTransform
from rvos.errors import ConfigError, DataError

SIZES = {"COCO_train2014_000000000009.jpg": (30, 40), "COCO_train2014_000000000025.jpg": (24, 32)}
A, B = SIZES  # two COCO images: A is 30 x 40, B is 24 x 32 (height x width)

TWO_POLYGONS = [[2.0, 3.0, 15.5, 3.0, 15.5, 12.0, 2.0, 12.0], [20, 14, 36, 14, 28, 27]]
TRIANGLE = [[1, 1, 30, 2, 10, 20]]


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _uncompressed_rle(mask):
    """COCO's uncompressed RLE (counts a list, column-major runs starting with background), as crowds have."""
    flat = mask.T.reshape(-1)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    return {"size": list(mask.shape), "counts": ([0] + runs) if flat[0] else runs}


def _compressed_rle(mask):
    encoded = coco_mask.encode(np.asfortranarray(mask))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


CAR = _box(24, 32, 5, 20, 3, 28)
CROWD = _box(24, 32, 0, 10, 0, 10)
PERSON = _box(30, 40, 10, 30, 20, 35)


def _entry(i, file_name, caption, dataset):
    h, w = SIZES[file_name]
    return {"file_name": file_name, "height": h, "width": w, "original_id": int(file_name[-8:-4]), "id": i,
            "caption": caption, "dataset_name": dataset}


def _ann(i, segmentation, bbox, original_id, iscrowd=0):
    return {"segmentation": segmentation, "area": 10.0, "iscrowd": iscrowd, "bbox": bbox, "image_id": i,
            "category_id": 1, "id": i, "original_id": original_id}


def write_refcoco(root):
    """COCO_ROOT with train2014/ and two datasets' train files; each image entry is one sentence with one annotation,
    as the converter writes them (ids numbered from 1 per file)."""
    rng = np.random.default_rng(0)
    (root / "train2014").mkdir(parents=True)
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "train2014" / name)
    refcoco = [
        (_entry(1, A, "the Left  dog", "refcoco"), _ann(1, TWO_POLYGONS, [2, 3, 34, 24], 101)),
        (_entry(2, A, "dog on the left side", "refcoco"), _ann(2, TWO_POLYGONS, [2, 3, 34, 24], 101)),
        (_entry(3, B, "red car", "refcoco"), _ann(3, _uncompressed_rle(CAR), [3, 5, 25, 15], 102)),
        (_entry(4, B, "the crowd", "refcoco"), _ann(4, _uncompressed_rle(CROWD), [0, 0, 10, 10], 103, iscrowd=1)),
        (_entry(5, A, "a sliver", "refcoco"), _ann(5, TRIANGLE, [45, 5, 4, 3], 104)),  # box outside the image
    ]
    refcoco_plus = [
        (_entry(1, B, "car", "refcoco+"), _ann(1, _compressed_rle(CAR), [3, 5, 25, 15], 102)),
        (_entry(2, A, "person", "refcoco+"), _ann(2, TRIANGLE, [1, 1, 29, 19], 105)),
    ]
    for dataset, entries in (("refcoco", refcoco), ("refcoco+", refcoco_plus)):
        path = annotation_file(root, dataset, "train")
        path.parent.mkdir()
        data = {"info": {}, "licenses": [], "categories": [{"supercategory": "animal", "id": 1, "name": "dog"}],
                "images": [e for e, _ in entries], "annotations": [a for _, a in entries]}
        path.write_text(json.dumps(data, indent=4))
    return root


def pycocotools_mask(segmentation, h, w):
    """SgMg's convert_coco_poly_to_mask for one annotation (compressed RLE: pycocotools' own decode)."""
    if isinstance(segmentation, dict) and isinstance(segmentation["counts"], str):
        return coco_mask.decode({**segmentation, "counts": segmentation["counts"].encode()}).astype(bool)
    mask = coco_mask.decode(coco_mask.frPyObjects(segmentation, h, w))
    return (mask[..., None] if mask.ndim < 3 else mask).any(axis=2)


@pytest.fixture
def coco_root(tmp_path):
    return write_refcoco(tmp_path / "coco")


def test_masks_decode_as_pycocotools_and_crowds_and_empty_boxes_are_dropped(coco_root, caplog):
    with caplog.at_level(logging.WARNING):
        split = open_split(annotation_file(coco_root, "refcoco", "train"))
    assert isinstance(split, RefCOCOSplit) and split.has_masks and split.name == "refcoco_train"
    assert split.dropped == {"crowd annotations": 1, "annotations with an empty box": 1,
                             "entries without annotation": 2}
    assert "1 crowd annotations" in caplog.text
    expected = {"1": pycocotools_mask(TWO_POLYGONS, 30, 40), "3": pycocotools_mask(_uncompressed_rle(CAR), 24, 32)}
    assert expected["1"].sum() > 150 and expected["1"][5, 5] and expected["1"][20, 28]  # both polygons drawn
    np.testing.assert_array_equal(expected["3"], CAR.astype(bool))
    for video, mask in expected.items():
        np.testing.assert_array_equal(split.target_masks(video, "0"), mask[None])
        np.testing.assert_array_equal(split.masks(video, [video], [0, 0]), np.stack([mask, mask])[None])
        (target,) = split.frame_targets(video, "0")  # what evaluation reads
        np.testing.assert_array_equal(target.crop((0, mask.shape[0], 0, mask.shape[1])), mask)
    plus = RefCOCOSplit(annotation_file(coco_root, "refcoco+", "train"))
    np.testing.assert_array_equal(plus.target_masks("1", "0")[0], pycocotools_mask(_compressed_rle(CAR), 24, 32))
    np.testing.assert_array_equal(plus.target_masks("2", "0")[0], pycocotools_mask(TRIANGLE, 30, 40))
    split.check_masks()


def test_each_sentence_is_a_one_frame_video_with_its_ids(coco_root):
    split = open_split(annotation_file(coco_root, "refcoco", "train"))
    assert split.samples() == [("1", "0"), ("2", "0"), ("3", "0")]
    v1, v3 = split.video("1"), split.video("3")
    assert v1.frames == ("COCO_train2014_000000000009",) and len(v1) == 1
    assert v1.expressions["0"].text == "the Left  dog" and v3.expressions["0"].text == "red car"
    # anno_ids key the masks (the file's ids); obj_ids name the COCO object, shared by sentences about it
    assert v1.expressions["0"].anno_ids == ("1",) and v1.expressions["0"].obj_ids == ("101",)
    assert split.video("2").expressions["0"].obj_ids == ("101",)
    assert split.images["3"]["original_id"] == 25 and split.images["3"]["dataset_name"] == "refcoco"
    assert split.frame_path("3", 0) == coco_root / "train2014" / B
    assert split.frame_size("1") == (30, 40) and split.object_ids("1") == ("1",)
    frames = split.read_frames("1", [0, 0])
    assert frames.shape == (2, 30, 40, 3) and frames.dtype == np.uint8
    with pytest.raises(DataError, match="no video '4'"):  # the crowd's entry is not a video
        split.video("4")


def test_images_are_read_without_their_exif_orientation_as_pil_reads_them(coco_root):
    path = coco_root / "train2014" / A
    image = Image.open(path)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees": a reader applying it would give 40 x 30
    image.save(path, exif=exif)
    split = open_split(annotation_file(coco_root, "refcoco", "train"))
    np.testing.assert_array_equal(split.read_frames("1")[0], np.asarray(Image.open(path).convert("RGB")))


def test_a_clip_batch_from_refcoco_through_the_training_data_path(coco_root):
    split = open_split(annotation_file(coco_root, "refcoco", "train"))
    transform = ClipTransform(30, 40, flip_prob=0.0)  # resizes image B's entries to 30 x 40, as image A is
    dataset = ClipDataset(split, 2, "global", 8, transform, seed=0)
    items = [dataset[p] for p in range(len(dataset))]
    assert sorted((it["video"], it["expression"]) for it in items) == sorted(split.samples())  # an epoch: each once
    for item in items:
        assert item["frames"].shape == (2, 3, 30, 40) and torch.equal(item["frames"][0], item["frames"][1])
        assert item["referred"].tolist() == [True]
        frames = split.read_frames(item["video"], [0, 0])
        _, target, _ = transform(frames, split.target_masks(item["video"], "0", [0, 0]), "")
        assert torch.equal(item["instances"][0], torch.from_numpy(target))
        assert torch.equal(item["frames"], torch.from_numpy(transform(frames, None, "")[0]).permute(0, 3, 1, 2))
    assert items[[it["video"] for it in items].index("1")]["text"] == "the left dog"
    batch = collate(items)
    assert batch["frames"].shape == (3, 2, 3, 30, 40) and batch["frames"].dtype == torch.uint8
    assert [i.shape for i in batch["instances"]] == [(1, 2, 30, 40)] * 3
    assert sorted(batch["videos"]) == ["1", "2", "3"] and batch["expressions"] == ["0"] * 3


def test_datasets_concatenate_from_a_config_as_sgmg_all(coco_root):
    names = ["refcoco/instances_refcoco_train.json", "refcoco+/instances_refcoco+_train.json"]
    data = from_dict(DataConfig, yaml.safe_load(f"root: {coco_root}\ntrain_split: [{', '.join(names)}]"), "data")
    assert data.train_splits == tuple(names)
    split = open_splits([coco_root / n for n in data.train_splits])  # as rvos train opens them
    assert isinstance(split, ConcatSplit) and split.has_masks and split.name == "refcoco_train+refcoco+_train"
    assert split.samples() == [("refcoco_train/1", "0"), ("refcoco_train/2", "0"), ("refcoco_train/3", "0"),
                               ("refcoco+_train/1", "0"), ("refcoco+_train/2", "0")]
    plus = split.parts[1]
    np.testing.assert_array_equal(split.target_masks("refcoco+_train/1", "0"), plus.target_masks("1", "0"))
    np.testing.assert_array_equal(split.masks("refcoco+_train/2", ["2"], [0]), plus.masks("2", ["2"], [0]))
    assert split.video("refcoco+_train/2").expressions["0"].text == "person"
    assert split.object_ids("refcoco_train/3") == ("3",) and split.frame_size("refcoco_train/3") == (24, 32)
    np.testing.assert_array_equal(split.read_frames("refcoco_train/3"), split.parts[0].read_frames("3"))
    dataset = ClipDataset(split, 1, "global", 8, ClipTransform(24, 40, flip_prob=0.5), seed=1)
    assert sorted(dataset.sample_at(p)[:2] for p in range(len(dataset))) == sorted(split.samples())
    assert collate([dataset[p] for p in range(5)])["frames"].shape[:3] == (5, 1, 3)
    # one split stays itself; parts with one name are told apart by their position
    assert isinstance(open_splits([coco_root / names[0]]), RefCOCOSplit)
    twice = ConcatSplit([split.parts[0], split.parts[0]])
    assert twice.samples()[3] == ("1.refcoco_train/1", "0") and len(twice.samples()) == 6
    assert from_dict(DataConfig, {"train_split": "train"}).train_splits == ("train",)  # one split, as before
    with pytest.raises(ConfigError, match="empty list"):
        validate(Config(model=None, data=from_dict(DataConfig, {"train_split": []})))


# --------------------------------------------------------------------------- bad input


def _edit(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_missing_or_unreadable_annotation_files_are_clear_errors(coco_root):
    with pytest.raises(DataError, match=r"instances_refcocog_train.json does not exist"):
        open_split(annotation_file(coco_root, "refcocog", "train"))
    path = annotation_file(coco_root, "refcoco", "train")
    path.write_text('{"images": [')
    with pytest.raises(DataError, match="is not valid JSON"):
        open_split(path)
    path.write_text('{"videos": {}}')
    with pytest.raises(DataError, match="'images' and 'annotations' lists"):
        open_split(path)


def test_a_missing_image_names_the_file_and_where_images_belong(coco_root):
    split = open_split(annotation_file(coco_root, "refcoco", "train"))
    (coco_root / "train2014" / B).unlink()
    with pytest.raises(DataError, match=r"COCO_train2014_000000000025.jpg \(entry 3 of .*\) does not exist.*train2014"):
        split.read_frames("3")


def test_a_frame_of_another_size_than_its_entry_is_an_error(coco_root):
    path = annotation_file(coco_root, "refcoco", "train")
    _edit(path, lambda d: d["images"][0].update(height=31))
    split = open_split(path)
    with pytest.raises(DataError, match=r"size \(30, 40\) differs from the video's \(31, 40\)"):
        split.read_frames("1")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][2].update(image_id=77), r"annotations\[2\]: image_id 77 is not the id of any entry"),
    (lambda d: d["images"][1].pop("caption"), r"images\[1\]: no 'caption'"),
    (lambda d: d["images"][1].update(id=1), r"images\[1\]: image id 1 appears twice"),
    (lambda d: d["images"][0].update(width=0), r"'width' must be a positive integer"),
    (lambda d: d["annotations"][0].pop("segmentation"), r"annotations\[0\]: no 'segmentation'"),
    (lambda d: d["annotations"][1].update(id=1), r"annotation id 1 appears twice"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"'bbox' must be \[x, y, width, height\]"),
])
def test_a_malformed_file_is_an_error_when_opened(coco_root, edit, message):
    path = annotation_file(coco_root, "refcoco", "train")
    _edit(path, edit)
    with pytest.raises(DataError, match=message):
        open_split(path)


@pytest.mark.parametrize("segmentation, message", [
    ([], "must be a non-empty list of polygons or an RLE"),
    ("M0", "must be a non-empty list of polygons or an RLE"),
    ([[1, 2, 3, 4, 5]], "polygon 0 must be a list of an even number"),
    ([[1, 2, 3, 4, 5, 6], [1, 2, "x", 4, 5, 6]], "polygon 1 must be a list"),
    ({"size": [24, 32], "counts": [10, 5]}, "corrupt RLE counts"),
    ({"size": [30, 40], "counts": [1200]}, r"RLE size \[30, 40\] does not match the frame size \[24, 32\]"),
    ({"size": [24, 32], "counts": "??"}, "corrupt RLE counts"),
])
def test_a_malformed_segmentation_names_its_annotation(coco_root, segmentation, message):
    path = annotation_file(coco_root, "refcoco", "train")
    _edit(path, lambda d: d["annotations"][2].update(segmentation=segmentation))
    split = open_split(path)  # opening reads no mask
    with pytest.raises(DataError, match=f"annotation 3 \\(entry 3\\): .*{message}"):
        split.target_masks("3", "0")
    with pytest.raises(DataError, match=message):
        split.check_masks()

"""JHMDB-Sentences' official files -> samples and COCO ground truth, against what MTTR's create_gt_in_coco_format.py
writes for the same small layout (``fixtures/jhmdb_coco_gt_official.json``, made by
tests/fixtures/make_jhmdb_coco_gt.py)."""

import json
import shutil
from pathlib import Path

import pytest

from rvos.cli import main
from rvos.data.jhmdb import jhmdb_coco_ground_truth, jhmdb_samples, read_masks
from rvos.errors import DataError
from tests.layouts import write_jhmdb_sentences

FIXTURE = json.loads((Path(__file__).parent.parent / "fixtures" / "jhmdb_coco_gt_official.json").read_text())


def test_ground_truth_of_the_published_draw_equals_the_official_one(tmp_path):
    gt = jhmdb_coco_ground_truth(write_jhmdb_sentences(tmp_path / "jhmdb"))
    assert gt == FIXTURE["gt"]
    assert gt["annotations"][3]["area"] == 0.0  # an empty mask in a drawn frame stays an image, as in MTTR's file


def test_samples_resolve_inside_the_root_and_give_the_official_window(tmp_path):
    root = write_jhmdb_sentences(tmp_path / "elsewhere")  # the samples file says ./jhmdb_sentences/...
    samples = jhmdb_samples(root)
    assert [(s.video, s.frame) for s in samples] == [("clip_a", 1), ("clip_a", 3), ("clip_a", 5), ("clip_b", 2),
                                                     ("clip_b", 3), ("clip_b", 4)]
    first = samples[0]
    assert first.frame_path(1) == root / "Rename_Images" / "pullup" / "clip_a" / "00001.png"
    assert first.sentence == "man in black pulling up" and first.num_frames == 5
    # MTTR: range(frame - 4, frame + 4) clamped to [1, frames with a mask]
    assert first.window(8) == [1, 1, 1, 1, 1, 2, 3, 4]
    assert samples[2].window(5) == [3, 4, 5, 5, 5]
    assert read_masks(first.masks_path).shape == (5, 18, 22)


def test_every_frame_stops_at_the_last_mask(tmp_path):
    root = write_jhmdb_sentences(tmp_path / "jhmdb")
    ids = [i["id"] for i in jhmdb_coco_ground_truth(root, every_frame=True)["images"]]
    assert ids == [f"v_clip_a_f_{t}" for t in range(1, 6)] + [f"v_clip_b_f_{t}" for t in range(1, 5)]
    official = {a["image_id"]: a["segmentation"] for a in FIXTURE["gt"]["annotations"]}
    mine = {a["image_id"]: a["segmentation"] for a in jhmdb_coco_ground_truth(root, every_frame=True)["annotations"]}
    assert all(mine[k] == v for k, v in official.items())


def test_bad_layouts_are_named(tmp_path):
    with pytest.raises(DataError, match="jhmdb_annotation.txt does not exist"):
        jhmdb_samples(tmp_path)
    root = write_jhmdb_sentences(tmp_path / "jhmdb")
    (root / "jhmdb_sentences_samples_metadata.json").rename(tmp_path / "draw.json")
    with pytest.raises(DataError, match="published JHMDB-Sentences protocol"):
        jhmdb_samples(root)
    assert len(jhmdb_samples(root, tmp_path / "draw.json")) == 6
    shutil.rmtree(root / "puppet_mask" / "walk")
    with pytest.raises(DataError, match="puppet_mask.mat does not exist"):
        jhmdb_samples(root, tmp_path / "draw.json")
    with pytest.raises(DataError, match="clip_b .* has no folder"):
        jhmdb_samples(root, every_frame=True)


def test_a_sample_without_a_frame_number_is_refused(tmp_path):
    root = write_jhmdb_sentences(tmp_path / "jhmdb")
    path = root / "jhmdb_sentences_samples_metadata.json"
    entries = json.loads(path.read_text())
    entries[1][1] = entries[1][1].replace("00003.png", "first.png")
    path.write_text(json.dumps(entries))
    with pytest.raises(DataError, match="entry 1 names frame"):
        jhmdb_samples(root)


def test_a_sample_of_another_sentence_is_refused(tmp_path):
    root = write_jhmdb_sentences(tmp_path / "jhmdb")
    path = root / "jhmdb_sentences_samples_metadata.json"
    entries = json.loads(path.read_text())
    entries[0][4] = "a cat"
    path.write_text(json.dumps(entries))
    with pytest.raises(DataError, match="entry 0 .* is not a sentence"):
        jhmdb_samples(root)


def test_cli_writes_a_ground_truth_rvos_eval_reads(tmp_path, capsys):
    root = write_jhmdb_sentences(tmp_path / "jhmdb")
    out = tmp_path / "gt.json"
    main(["export-coco", "jhmdb-sentences", str(root), "--out", str(out)])
    assert "6 images (the published 3-frame draw)" in capsys.readouterr().out
    gt = json.loads(out.read_text())
    assert gt == FIXTURE["gt"]
    # predictions: the ground truth itself
    preds = [{"image_id": a["image_id"], "segmentation": a["segmentation"], "score": 0.9} for a in gt["annotations"]]
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    main(["eval", "--gt", str(out), "--pred", str(tmp_path / "pred.json"), "--json", str(tmp_path / "s.json")])
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["mean_iou"] == pytest.approx(1.0) and scores["P@0.9"] == pytest.approx(1.0)
    # pycocotools counts an empty ground truth as missed even by an empty prediction, as the official evaluation does
    assert scores["mAP 0.5:0.95"] < 1
    before = out.read_text()
    assert main(["export-coco", "jhmdb-sentences", str(root), "--out", str(out), "--every-frame"]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == before

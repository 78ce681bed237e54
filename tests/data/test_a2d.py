"""A2D-Sentences' annotation files -> COCO ground truth, against what MTTR's create_gt_in_coco_format.py writes for
the same small layout (``fixtures/a2d_coco_gt_official.json``, made by tests/fixtures/make_a2d_coco_gt.py)."""

import json
from pathlib import Path

import pytest

from rvos.cli import main
from rvos.data.a2d import a2d_coco_ground_truth, a2d_sentences
from rvos.errors import DataError
from tests.layouts import write_a2d_sentences

FIXTURE = json.loads((Path(__file__).parent.parent / "fixtures" / "a2d_coco_gt_official.json").read_text())


def test_ground_truth_equals_the_official_one(tmp_path):
    gt = a2d_coco_ground_truth(write_a2d_sentences(tmp_path / "a2d"), "test")
    assert gt == FIXTURE["gt"]
    # vid_b's instance is missing from one of its frames: that frame is not an image; vid_c (train) and vid_d
    # (missed) are left out
    assert [i["id"] for i in gt["images"]] == ["v_vid_a_f_5_i_0", "v_vid_a_f_17_i_0", "v_vid_a_f_5_i_1",
                                               "v_vid_a_f_17_i_1", "v_vid_b_f_3_i_2"]


def test_subsets_and_missed_videos(tmp_path):
    root = write_a2d_sentences(tmp_path / "a2d")
    assert [s[0] for s in a2d_sentences(root, "train")] == ["vid_c"]
    assert "vid_d" not in {s[0] for s in a2d_sentences(root, "test")}


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="videoset.csv does not exist"):
        a2d_sentences(tmp_path)


def test_cli_writes_a_ground_truth_rvos_eval_reads(tmp_path):
    root = write_a2d_sentences(tmp_path / "a2d")
    out = tmp_path / "gt.json"
    main(["export-coco", "a2d-sentences", str(root), "--out", str(out)])
    gt = json.loads(out.read_text())
    preds = [{"image_id": a["image_id"], "segmentation": a["segmentation"], "score": 1.0} for a in gt["annotations"]]
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    main(["eval", "--gt", str(out), "--pred", str(tmp_path / "pred.json"), "--json", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text())["mean_iou"] == pytest.approx(1.0)

"""A2D / JHMDB-Sentences metrics against the official evaluation: ``fixtures/coco_refer_official.json`` holds a
small case (8 images, 3 queries each, tied scores) and the numbers pycocotools' COCOeval (as MTTR calls it) and
MTTR's metrics.py computed on it (tests/fixtures/make_coco_refer.py)."""

import json
from pathlib import Path

import pytest

from rvos.cli import main
from rvos.errors import DataError
from rvos.eval.coco_refer import evaluate_coco_refer

FIXTURE = json.loads((Path(__file__).parent.parent / "fixtures" / "coco_refer_official.json").read_text())


@pytest.fixture
def files(tmp_path):
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(FIXTURE["gt"]))
    pred.write_text(json.dumps(FIXTURE["predictions"]))
    return gt, pred


def test_matches_the_official_numbers(files):
    scores = evaluate_coco_refer(*files)
    for key, value in FIXTURE["expected"].items():
        assert scores[key] == pytest.approx(value, abs=1e-12), key
    assert scores["num_images"] == 8 and scores["predictions"] == "all"


def test_best_only_changes_the_map_not_the_iou_metrics(files):
    all_queries, best = evaluate_coco_refer(*files), evaluate_coco_refer(*files, predictions="best")
    for key in ("P@0.5", "overall_iou", "mean_iou"):
        assert best[key] == all_queries[key]
    assert best["mAP 0.5:0.95"] != all_queries["mAP 0.5:0.95"]


def test_missing_and_unknown_images_are_errors(files, tmp_path):
    gt, _ = files
    pred = tmp_path / "partial.json"
    pred.write_text(json.dumps([p for p in FIXTURE["predictions"] if p["image_id"] != 3]))
    with pytest.raises(DataError, match="1 of 8 ground-truth images have no prediction"):
        evaluate_coco_refer(gt, pred)
    pred.write_text(json.dumps(FIXTURE["predictions"] + [dict(FIXTURE["predictions"][0], image_id=99)]))
    with pytest.raises(DataError, match="not in the ground truth"):
        evaluate_coco_refer(gt, pred)


def test_cli_writes_the_keys_mttr_prints(files, tmp_path, capsys):
    out = tmp_path / "scores.json"
    main(["eval", "--gt", str(files[0]), "--pred", str(files[1]), "--json", str(out)])
    scores = json.loads(out.read_text())
    assert set(FIXTURE["expected"]) <= set(scores)
    assert "mAP 0.5:0.95" in capsys.readouterr().out

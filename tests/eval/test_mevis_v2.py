"""MeViS v2: its expression file, no-target expressions scored as the official MeViS evaluation scores them
(``fixtures/mevis_no_target_official.json``, made by tests/fixtures/make_mevis_no_target.py), N-acc / T-acc, and
results labelled with the release."""

import json
import shutil
from pathlib import Path

import pytest

from rvos.cli import main
from rvos.data.splits import open_split
from rvos.errors import DataError
from rvos.eval.evaluate import evaluate
from tests.layouts import write_mevis, write_mevis_v2

FIXTURE = json.loads((Path(__file__).parent.parent / "fixtures" / "mevis_no_target_official.json").read_text())


def test_the_v2_expression_file_is_read_and_labelled(tmp_path):
    split_dir, _ = write_mevis_v2(tmp_path)
    split = open_split(split_dir)
    assert split.version == "v2" and split.meta_path.name == "meta_expressions_v2.json"
    assert split.video("v1").expressions["3"].anno_ids == ()
    assert not split.target_masks("v1", "3").any()
    write_mevis(tmp_path / "one")
    assert open_split(tmp_path / "one" / "valid_u").version == "v1"


def test_two_expression_files_in_one_folder_is_an_error(tmp_path):
    split_dir, _ = write_mevis_v2(tmp_path)
    shutil.copy(split_dir / "meta_expressions_v2.json", split_dir / "meta_expressions_v2_release.json")
    with pytest.raises(DataError, match="which one to read cannot be told"):
        open_split(split_dir)
    (split_dir / "meta_expressions_v2_release.json").rename(split_dir / "meta_expressions.json")
    with pytest.raises(DataError, match="two releases' files"):
        open_split(split_dir)


def test_no_target_expressions_score_as_the_official_evaluation(tmp_path):
    split_dir, pred = write_mevis_v2(tmp_path)
    result = evaluate(split_dir, pred, progress=False)
    assert result.per_expression.keys() == FIXTURE["per_expression"].keys()
    for key, (j, f) in FIXTURE["per_expression"].items():
        assert result.per_expression[key] == [pytest.approx(j, abs=1e-12), pytest.approx(f, abs=1e-12)], key
    # '3' and '4' have no target; '4' predicts a box in one frame: not a no-target prediction. '2' refers to an
    # object but predicts nothing: a missed target.
    assert result.release == "MeViS v2"
    scores = result.to_json()
    assert scores["N-acc"] == pytest.approx(1 / 2) and scores["T-acc"] == pytest.approx(2 / 3)
    assert scores["Final"] == pytest.approx((result.JF + 1 / 2 + 2 / 3) / 3)
    assert scores["by_target"]["no-target"]["count"] == 2 and scores["by_target"]["target"]["count"] == 3
    assert "not public" in scores["no_target_note"]


def test_a_v1_split_has_no_no_target_metrics(tmp_path):
    write_mevis(tmp_path)
    from rvos.eval.export import export_masks

    export_masks(tmp_path / "valid_u", tmp_path / "gt", progress=False)
    scores = evaluate(tmp_path / "valid_u", tmp_path / "gt", progress=False).to_json()
    assert scores["release"] == "MeViS v1" and "N-acc" not in scores and scores["J&F"] == 1.0


def test_eval_cli_prints_the_release_and_the_accuracies(tmp_path, capsys):
    split_dir, pred = write_mevis_v2(tmp_path)
    assert main(["-q", "eval", "--gt", str(split_dir), "--pred", str(pred), "--json", str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr().out
    assert "MeViS v2" in printed and "N-acc 0.5000" in printed and "T-acc 0.6667" in printed
    assert json.loads((tmp_path / "s.json").read_text())["release"] == "MeViS v2"
    # the ground truth exported and evaluated: every no-target expression is an empty prediction
    main(["export-masks", "--gt", str(split_dir), "--out", str(tmp_path / "gt")])
    exact = evaluate(split_dir, tmp_path / "gt", progress=False).to_json()
    assert exact["J&F"] == 1.0 and exact["N-acc"] == 1.0 and exact["T-acc"] == 1.0 and exact["Final"] == 1.0


def test_submit_packs_every_expression_of_a_v2_split(tmp_path):
    import zipfile

    split_dir, pred = write_mevis_v2(tmp_path)
    assert main(["submit", str(pred), "--split-dir", str(split_dir), "--out", str(tmp_path / "sub.zip")]) == 0
    names = zipfile.ZipFile(tmp_path / "sub.zip").namelist()
    assert sorted(names) == sorted(f"v1/{e}/{t:05d}.png" for e in "01234" for t in range(3))


def test_an_expression_with_missing_frames_is_wrong_in_n_acc_and_t_acc(tmp_path):
    split_dir, pred = write_mevis_v2(tmp_path)
    shutil.rmtree(pred / "v1" / "3")  # the no-target expression predicted rightly (empty), now missing
    (pred / "v1" / "0" / "00001.png").unlink()  # a target expression predicted rightly, one frame missing
    scores = evaluate(split_dir, pred, progress=False, allow_missing=True).to_json()
    assert scores["N-acc"] == 0.0 and scores["T-acc"] == pytest.approx(1 / 3)
    assert scores["per_expression"]["v1_3"] == [0.0, 0.0]

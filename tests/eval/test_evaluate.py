import json
import shutil
import zipfile

import numpy as np
import pytest
from layouts import write_mevis, write_ytvos

from rvos.cli import main
from rvos.data.frames import write_mask_png
from rvos.eval.evaluate import evaluate
from rvos.eval.export import export_masks
from rvos.eval.submit import write_submission
from rvos.errors import DataError, EvalError


def test_exported_ground_truth_scores_one(tmp_path, synth_root):
    n = export_masks(synth_root / "valid_u", tmp_path / "gt", progress=False)
    assert n > 0
    result = evaluate(synth_root / "valid_u", tmp_path / "gt", progress=False)
    assert (result.J, result.F, result.JF) == (1.0, 1.0, 1.0)
    assert set(result.by_kind) and all(v["J&F"] == 1.0 for v in result.by_kind.values())
    assert result.missing == [] and result.wrong_size == []


def test_scores_average_frames_then_expressions(tmp_path):
    objects = write_mevis(tmp_path)
    pred = tmp_path / "pred"
    for t in range(3):
        write_mask_png(pred / "v1" / "0" / f"{t:05d}.png", objects["1"][t])  # perfect
        write_mask_png(pred / "v1" / "1" / f"{t:05d}.png", objects["1"][t])  # misses object 2 in frame 0
        write_mask_png(pred / "v1" / "2" / f"{t:05d}.png", np.zeros((24, 32), bool))  # misses frame 0 only
    result = evaluate(tmp_path / "valid_u", pred, progress=False)
    j1 = (objects["1"][0].sum() / (objects["1"][0] | objects["2"][0]).sum() + 2) / 3
    assert result.per_expression["v1_0"] == [1.0, 1.0]
    assert result.per_expression["v1_1"][0] == pytest.approx(j1)
    assert result.per_expression["v1_2"] == [pytest.approx(2 / 3), pytest.approx(2 / 3)]
    assert result.J == pytest.approx((1 + j1 + 2 / 3) / 3)
    assert result.JF == pytest.approx((result.J + result.F) / 2)
    assert result.by_kind == {}  # this split records no kinds


def test_missing_and_wrong_size_predictions_are_errors_listing_each(tmp_path):
    objects = write_mevis(tmp_path)
    pred = tmp_path / "pred"
    for exp in ("0", "1", "2"):
        for t in range(3):
            write_mask_png(pred / "v1" / exp / f"{t:05d}.png", objects["1"][t])
    (pred / "v1" / "0" / "00001.png").unlink()
    (pred / "v1" / "2" / "00002.png").unlink()
    write_mask_png(pred / "v1" / "1" / "00000.png", np.zeros((12, 16), bool))
    with pytest.raises(EvalError) as info:
        evaluate(tmp_path / "valid_u", pred, progress=False)
    message = str(info.value)
    assert "v1/0/00001.png" in message and "v1/2/00002.png" in message
    assert "v1/1/00000.png: size 12x16, expected 24x32" in message
    result = evaluate(tmp_path / "valid_u", pred, allow_missing=True, progress=False)
    assert result.missing == ["v1/0/00001.png", "v1/2/00002.png"]
    assert len(result.wrong_size) == 1
    assert result.per_expression["v1_0"] == [pytest.approx(2 / 3), pytest.approx(2 / 3)]  # the missing frame scores 0


def test_workers_give_the_same_numbers(tmp_path, synth_root):
    export_masks(synth_root / "valid_u", tmp_path / "gt", progress=False)
    # degrade some predictions so the scores are not all 1
    for png in sorted((tmp_path / "gt").rglob("*.png"))[::3]:
        write_mask_png(png, np.zeros((96, 160), bool))
    one = evaluate(synth_root / "valid_u", tmp_path / "gt", workers=1, progress=False)
    two = evaluate(synth_root / "valid_u", tmp_path / "gt", workers=2, progress=False)
    assert one.per_expression == two.per_expression and one.JF == two.JF < 1


def test_unannotated_split_cannot_be_evaluated(tmp_path):
    write_mevis(tmp_path, split="valid", with_masks=False)
    (tmp_path / "pred").mkdir()
    with pytest.raises(EvalError, match="rvos submit"):
        evaluate(tmp_path / "valid", tmp_path / "pred", progress=False)


def test_eval_cli_writes_json_and_fails_cleanly(tmp_path, synth_root, capsys):
    export_masks(synth_root / "valid_u", tmp_path / "gt", progress=False)
    assert main(["-q", "eval", "--gt", str(synth_root / "valid_u"), "--pred", str(tmp_path / "gt"),
                 "--json", str(tmp_path / "scores.json")]) == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["J&F"] == 1.0 and scores["missing"] == [] and "motion-decided" in scores["by_kind"]
    assert all(v == [1.0, 1.0] for v in scores["per_expression"].values())
    assert "J&F 1.0000" in capsys.readouterr().out
    # a missing prediction: exit 2, a message without traceback, and the earlier JSON left intact
    next((tmp_path / "gt").rglob("*.png")).unlink()
    before = (tmp_path / "scores.json").read_bytes()
    assert main(["-q", "eval", "--gt", str(synth_root / "valid_u"), "--pred", str(tmp_path / "gt"),
                 "--json", str(tmp_path / "scores.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 missing") and "Traceback" not in err
    assert (tmp_path / "scores.json").read_bytes() == before


def test_export_needs_an_annotated_split(tmp_path):
    write_mevis(tmp_path, split="valid", with_masks=False)
    with pytest.raises(DataError, match="no ground-truth masks"):
        export_masks(tmp_path / "valid", tmp_path / "out", progress=False)


def test_mevis_submission_zip_layout(tmp_path, synth_root):
    export_masks(synth_root / "valid_u", tmp_path / "pred", progress=False)
    n = write_submission(synth_root / "valid_u", tmp_path / "pred", tmp_path / "sub.zip", progress=False)
    names = zipfile.ZipFile(tmp_path / "sub.zip").namelist()
    assert len(names) == n and all(name.count("/") == 2 for name in names)
    assert "valid_u_00000/0/00000.png" in names


def test_ytvos_submission_has_annotations_prefix_and_skips_test_videos(tmp_path):
    write_ytvos(tmp_path, "valid")
    pred = tmp_path / "pred"
    for exp in ("0", "1"):
        for frame in ("00000", "00005", "00010"):
            write_mask_png(pred / "vid" / exp / f"{frame}.png", np.zeros((24, 32), bool))
    write_submission(tmp_path / "valid", pred, tmp_path / "sub.zip", progress=False)
    names = zipfile.ZipFile(tmp_path / "sub.zip").namelist()
    assert sorted(names)[0] == "Annotations/vid/0/00000.png" and len(names) == 6
    (tmp_path / "meta_expressions" / "test").mkdir()
    (tmp_path / "meta_expressions" / "test" / "meta_expressions.json").write_text('{"videos": {"vid": {}}}')
    write_submission(tmp_path / "valid", pred, tmp_path / "sub2.zip", progress=False)
    assert zipfile.ZipFile(tmp_path / "sub2.zip").namelist() == []


def test_incomplete_submission_is_refused_and_an_old_zip_kept(tmp_path, synth_root):
    export_masks(synth_root / "valid_u", tmp_path / "pred", progress=False)
    write_submission(synth_root / "valid_u", tmp_path / "pred", tmp_path / "sub.zip", progress=False)
    before = (tmp_path / "sub.zip").read_bytes()
    pngs = sorted((tmp_path / "pred").rglob("*.png"))
    pngs[0].unlink()
    write_mask_png(pngs[1], np.zeros((10, 10), bool))
    with pytest.raises(EvalError) as info:
        write_submission(synth_root / "valid_u", tmp_path / "pred", tmp_path / "sub.zip", progress=False)
    assert "missing" in str(info.value) and "wrong size" in str(info.value)
    assert (tmp_path / "sub.zip").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".zip"] == ["sub.zip"]  # no temporary left behind


def test_eval_and_export_need_only_the_two_annotation_files(tmp_path, capsys):
    objects = write_mevis(tmp_path)
    split = tmp_path / "valid_u"
    shutil.rmtree(split / "JPEGImages")
    assert sorted(p.name for p in split.iterdir()) == ["mask_dict.json", "meta_expressions.json"]
    assert main(["-q", "export-masks", "--gt", str(split), "--out", str(tmp_path / "gt")]) == 0
    write_mask_png(tmp_path / "gt" / "v1" / "0" / "00001.png", objects["2"][0])  # one wrong frame
    assert main(["-q", "eval", "--gt", str(split), "--pred", str(tmp_path / "gt"),
                 "--json", str(tmp_path / "scores.json")]) == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["per_expression"]["v1_1"] == [1.0, 1.0] and scores["per_expression"]["v1_0"][0] == pytest.approx(2 / 3)
    assert "J&F" in capsys.readouterr().out

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


def test_missing_and_wrong_size_predictions_are_errors_summarised_per_video(tmp_path):
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
    assert str(info.value).splitlines() == [
        f"2 missing and 1 unreadable or wrong-size predictions in {pred}, in 1 of 1 videos (pass --allow-missing to "
        "score them 0; --json FILE lists every file):",
        "  v1: 2 of 9 masks missing, in 2 of 3 expressions; 1 unreadable or of the wrong size "
        "(e.g. v1/1/00000.png: size 12x16, expected 24x32)"]
    assert info.value.missing == ["v1/0/00001.png", "v1/2/00002.png"]
    assert info.value.wrong_size == ["v1/1/00000.png: size 12x16, expected 24x32"]
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
    # the JSON now lists the problem and holds no scores: the earlier run's cannot be mistaken for this one's
    report = json.loads((tmp_path / "scores.json").read_text())
    assert "J&F" not in report and len(report["missing"]) == 1 and report["error"] in err
    assert (tmp_path / "scores.json").read_bytes() != before


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
    assert scores["per_expression"]["v1_1"] == [1.0, 1.0]
    assert scores["per_expression"]["v1_0"][0] == pytest.approx(2 / 3)
    assert "J&F" in capsys.readouterr().out


def _write_json_only_split(split_dir, videos: int, expressions: int, frames: int):
    """A MeViS split of only meta_expressions.json and mask_dict.json: one 20x30 box per video."""
    from rvos.data import rle
    from layouts import box_mask

    box = rle.encode(box_mask(20, 30, 2, 8, 3, 9))
    meta = {"videos": {f"vid{i:02d}": {"frames": [f"{t:05d}" for t in range(frames)], "expressions": {
        str(e): {"exp": "a box", "obj_id": [0], "anno_id": [i]} for e in range(expressions)}} for i in range(videos)}}
    split_dir.mkdir(parents=True)
    (split_dir / "meta_expressions.json").write_text(json.dumps(meta))
    (split_dir / "mask_dict.json").write_text(json.dumps({str(i): [box] * frames for i in range(videos)}))


def test_a_split_without_predictions_is_one_line_per_video_and_every_file_in_the_json(tmp_path, capsys):
    _write_json_only_split(tmp_path / "split", videos=25, expressions=2, frames=30)
    (tmp_path / "pred").mkdir()
    write_mask_png(tmp_path / "pred" / "vid03" / "1" / "00007.png", np.zeros((20, 30), bool))
    write_mask_png(tmp_path / "pred" / "vid03" / "1" / "00008.png", np.zeros((10, 30), bool))
    code = main(["-q", "eval", "--gt", str(tmp_path / "split"), "--pred", str(tmp_path / "pred"),
                 "--json", str(tmp_path / "report.json")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 + 20 + 1
    assert err[0].startswith("error: 1498 missing and 1 unreadable or wrong-size predictions")
    assert "in 25 of 25 videos" in err[0]
    assert err[1] == "  vid00: no predictions (30 frames x 2 expressions)"
    assert err[4] == ("  vid03: 58 of 60 masks missing, in 2 of 2 expressions; 1 unreadable or of the wrong size "
                      "(e.g. vid03/1/00008.png: size 10x30, expected 20x30)")
    assert err[-1] == "  ... and 5 more videos"
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["missing"]) == 1498 and report["missing"][0] == "vid00/0/00000.png"
    assert report["wrong_size"] == ["vid03/1/00008.png: size 10x30, expected 20x30"]


def test_submit_summarises_per_video_and_lists_every_file_in_its_json(tmp_path, capsys):
    _write_json_only_split(tmp_path / "valid", videos=3, expressions=2, frames=4)
    pred = tmp_path / "pred"
    for i in range(3):
        for e in range(2):
            for t in range(4):
                write_mask_png(pred / f"vid{i:02d}" / str(e) / f"{t:05d}.png", np.zeros((20, 30), bool))
    assert main(["-q", "submit", str(pred), "--split-dir", str(tmp_path / "valid"), "--out", str(tmp_path / "s.zip"),
                 "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["pngs"] == 24
    shutil.rmtree(pred / "vid01")
    (pred / "vid02" / "0" / "00003.png").write_bytes(b"not a png")
    assert main(["-q", "submit", str(pred), "--split-dir", str(tmp_path / "valid"), "--out", str(tmp_path / "s.zip"),
                 "--json", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[1:] == ["  vid01: no predictions (4 frames x 2 expressions)",
                       "  vid02: 1 unreadable or of the wrong size (e.g. vid02/0/00003.png: not a PNG)"]
    report = json.loads((tmp_path / "s.json").read_text())
    assert len(report["missing"]) == 8 and report["wrong_size"] == ["vid02/0/00003.png: not a PNG"]


def test_submit_without_frames_or_masks_checks_each_video_against_its_first_png(tmp_path):
    write_mevis(tmp_path, split="valid", with_masks=False)
    shutil.rmtree(tmp_path / "valid" / "JPEGImages")
    pred = tmp_path / "pred"
    for e in ("0", "1", "2"):
        for t in range(3):
            write_mask_png(pred / "v1" / e / f"{t:05d}.png", np.zeros((24, 32), bool))
    assert write_submission(tmp_path / "valid", pred, tmp_path / "s.zip", progress=False) == 9
    write_mask_png(pred / "v1" / "2" / "00001.png", np.zeros((24, 30), bool))
    with pytest.raises(EvalError, match=r"v1/2/00001.png: size 24x30, while the video's first PNG is 24x32"):
        write_submission(tmp_path / "valid", pred, tmp_path / "s.zip", progress=False)

"""The Ref-DAVIS17 protocol: per-expression masks merged into each annotator set's DAVIS results, each scored
with the DAVIS 2017 evaluation (itself tested against the official code in test_davis.py), the four averaged."""

import json

import numpy as np
import pytest
from layouts import write_refdavis

from rvos.cli import main
from rvos.data.frames import read_label_png, write_mask_png
from rvos.errors import DataError, EvalError
from rvos.eval.refdavis import evaluate_refdavis


def _write_predictions(pred, objects, empty: tuple[str, ...] = ()):
    """Each expression predicts its object exactly, except the expressions in ``empty`` (empty masks)."""
    for o, masks in objects.items():
        for k in range(4):
            exp_id = str(4 * (o - 1) + k)
            for t, mask in enumerate(masks):
                write_mask_png(pred / "pair" / exp_id / f"{t:05d}.png", mask & (exp_id not in empty))


@pytest.mark.parametrize("task", ["semi-supervised", "unsupervised"])
def test_each_annotator_set_is_scored_and_the_four_averaged(tmp_path, task):
    split, davis, objects = write_refdavis(tmp_path)
    # expression 6 is object 2 by annotator set 2: that set scores J = F = 0 on object 2, 1 on object 1
    _write_predictions(tmp_path / "pred", objects, empty=("6",))
    result = evaluate_refdavis(split, tmp_path / "pred", davis, tmp_path / "out", task=task).to_json()
    per_set = [result["per_annotator"][f"anno_{k}"]["J&F-Mean"] for k in range(4)]
    assert per_set == pytest.approx([1.0, 1.0, 0.5, 1.0])
    assert result["J&F-Mean"] == pytest.approx(0.875)
    labels = read_label_png(tmp_path / "out" / "anno_0" / "pair" / "00001.png")
    assert set(np.unique(labels)) == {0, 1, 2}
    np.testing.assert_array_equal(labels == 1, objects[1][1])


def test_a_missing_expression_mask_is_an_error(tmp_path):
    split, davis, objects = write_refdavis(tmp_path)
    _write_predictions(tmp_path / "pred", objects)
    (tmp_path / "pred" / "pair" / "5" / "00002.png").unlink()
    with pytest.raises(EvalError, match="1 expression masks are missing"):
        evaluate_refdavis(split, tmp_path / "pred", davis, tmp_path / "out")


def test_a_split_without_four_expressions_per_object_is_refused(tmp_path):
    split, davis, objects = write_refdavis(tmp_path)
    meta_path = tmp_path / "ref" / "meta_expressions" / "valid" / "meta_expressions.json"
    meta = json.loads(meta_path.read_text())
    del meta["videos"]["pair"]["expressions"]["7"]
    meta_path.write_text(json.dumps(meta))
    _write_predictions(tmp_path / "pred", objects)
    with pytest.raises(DataError, match="not 4 per object"):
        evaluate_refdavis(split, tmp_path / "pred", davis, tmp_path / "out")


def test_refdavis_command_predicts_and_evaluates(tmp_path, capsys):
    import torch
    from contract import KEEP_ALL, tiny_config

    from rvos.engine.checkpoint import save_model
    from rvos.models.build import build_model

    cfg = tiny_config("vlm", "infer.window=4", KEEP_ALL)
    torch.manual_seed(0)  # a random model: the test is the protocol's plumbing, not the masks' quality
    save_model(tmp_path / "model", build_model(cfg.model).eval(), cfg)
    split, davis, _ = write_refdavis(tmp_path)
    assert main(["-q", "refdavis", "--run", str(tmp_path / "model"), "--split-dir", str(split), "--davis",
                 str(davis), "--out", str(tmp_path / "out"), "--json", str(tmp_path / "scores.json")]) == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert len(list((tmp_path / "out" / "expressions" / "pair").iterdir())) == 8
    per_set = [scores["per_annotator"][f"anno_{k}"]["J&F-Mean"] for k in range(4)]
    assert scores["J&F-Mean"] == pytest.approx(np.mean(per_set))
    assert "mean" in capsys.readouterr().out

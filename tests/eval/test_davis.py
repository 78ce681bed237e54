"""The DAVIS 2017 table against numbers the official davis2017-evaluation code computed on the case
tests/layouts.write_davis writes (run once outside the project; only its numbers are kept here)."""

import json

import numpy as np
import pytest
from layouts import write_davis

from rvos.cli import main
from rvos.errors import DataError, EvalError
from rvos.eval.davis import evaluate_davis, statistics

OFFICIAL = {
    "semi-supervised": {
        "J&F-Mean": 0.7979715644692426, "J-Mean": 0.7592054514113338, "J-Recall": 0.8857142857142858,
        "J-Decay": -0.12358722976370037, "F-Mean": 0.8367376775271513, "F-Recall": 0.8857142857142858,
        "F-Decay": -0.11007147498375566,
        "per_object": {"boxes_1": [0.8252450980392156, 0.7888888888888889],
                       "boxes_2": [0.8615384615384615, 0.9912280701754386], "trio_1": [1.0, 1.0],
                       "trio_2": [0.6806722689075632, 0.9749999999999999],
                       "trio_3": [0.42857142857142855, 0.42857142857142855]},
    },
    "unsupervised": {
        "J&F-Mean": 0.7197761606078292, "J-Mean": 0.6809366630913593, "J-Recall": 0.7777777777777778,
        "J-Decay": -0.03211989667790771, "F-Mean": 0.7586156581242993, "F-Recall": 0.7777777777777778,
        "F-Decay": -0.01624099541584807,
        # the official code names matched pairs in proposal order: boxes_1 is object 2 (proposal 1)
        "per_object": {"boxes_1": [0.8841094448829256, 1.0], "boxes_2": [0.8555555555555556, 0.9906542056074769],
                       "trio_1": [0.7559274059274058, 0.8024240850140197], "trio_2": [0.9090909090909091, 1.0],
                       "trio_3": [0.0, 0.0]},
    },
}


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    write_davis(root / "DAVIS", root / "results")  # no JPEGImages: the frames are never needed
    return root


@pytest.mark.parametrize("task, folder", [("semi-supervised", "semi"), ("unsupervised", "unsup")])
def test_table_equals_the_official_evaluation(davis, task, folder):
    result = evaluate_davis(davis / "DAVIS", davis / "results" / folder, task)
    expected = OFFICIAL[task]
    for measure, value in result.table.items():
        assert value == pytest.approx(expected[measure], abs=1e-12), measure
    assert list(result.per_object) == list(expected["per_object"])
    for name, (j, f) in expected["per_object"].items():
        got = result.per_object[name]
        assert [got["J-Mean"], got["F-Mean"]] == pytest.approx([j, f], abs=1e-12), name


def test_recall_and_decay_follow_the_official_quarters():
    values = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    mean, recall, decay = statistics(values)
    # 9 frames: quarters [0:3], [2:5], [4:7], [6:9] (each with its right end)
    assert mean == pytest.approx(0.5) and recall == pytest.approx(4 / 9)
    assert decay == pytest.approx(np.mean([0.9, 0.8, 0.7]) - np.mean([0.3, 0.2, 0.1]))


def test_cli_prints_the_table_and_writes_json(davis, capsys):
    assert main(["-q", "eval", "--gt", str(davis / "DAVIS"), "--pred", str(davis / "results" / "semi"),
                 "--task", "semi-supervised", "--json", str(davis / "semi.json")]) == 0
    out = capsys.readouterr().out
    assert "J&F-Mean" in out and "0.798" in out and "trio_3" in out
    scores = json.loads((davis / "semi.json").read_text())
    assert scores["J-Decay"] == pytest.approx(OFFICIAL["semi-supervised"]["J-Decay"], abs=1e-12)
    assert scores["num_objects"] == 5 and scores["task"] == "semi-supervised"


def test_bad_results_are_errors_naming_the_sequence(davis, tmp_path):
    import shutil

    from layouts import _save_labels

    results = tmp_path / "semi"
    shutil.copytree(davis / "results" / "semi", results)
    (results / "boxes" / "00004.png").unlink()
    labels = np.zeros((36, 48), np.uint8)
    labels[0, 0] = 4  # 'trio' has 3 objects
    _save_labels(results / "trio" / "00003.png", labels)
    with pytest.raises(EvalError) as info:
        evaluate_davis(davis / "DAVIS", results, "semi-supervised")
    message = str(info.value)
    assert "boxes: 1 of 10 frames missing (first: 00004.png)" in message
    assert "trio: result id 4 is above the sequence's 3 objects" in message
    with pytest.raises(DataError, match="ImageSets/2017/test-dev.txt does not exist"):
        evaluate_davis(davis / "DAVIS", results, "semi-supervised", subset="test-dev")

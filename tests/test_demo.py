import json

import pytest

from rvos.demo import run_demo

# the tiny config on a 4-video benchmark of 6-frame 48x64 videos, a few steps: the pipeline, not the scores
SMALL = ["data.synth.train=4", "data.synth.valid_u=3", "data.synth.valid=1", "data.synth.frames=6",
         "data.synth.height=48", "data.synth.width=64", "data.short_side=48", "data.max_long_side=64",
         "data.num_frames=4", "data.workers=0", "train.batch_size=2", "train.iterations=3", "train.log_period=1"]


@pytest.mark.slow
def test_demo_trains_evaluates_and_writes_the_report(tmp_path):
    summary = run_demo(tmp_path / "demo", minutes=5, progress=False, overrides=SMALL)
    report = tmp_path / "demo" / "report"
    assert (report / "training_curve.png").stat().st_size > 5000
    text = (report / "report.md").read_text()
    assert "| expressions | count | J&F | J | F |" in text and "| all |" in text
    scores = json.loads((tmp_path / "demo" / "eval" / "scores.json").read_text())
    assert summary["scores"]["J&F"] == scores["J&F"] and scores["missing"] == []
    assert summary["examples"] and len({ex["kind"] for ex in summary["examples"]}) == len(summary["examples"])
    for ex in summary["examples"]:
        assert (report / ex["gif"]).stat().st_size > 1000 and (report / ex["mp4"]).stat().st_size > 1000
        assert f"| {ex['kind']} |" in text
    assert "<img" in (report / "index.html").read_text()
    # a second run reuses the trained model instead of training again
    steps = (tmp_path / "demo" / "run" / "metrics.jsonl").read_text()
    again = run_demo(tmp_path / "demo", minutes=5, progress=False, overrides=SMALL)
    assert (tmp_path / "demo" / "run" / "metrics.jsonl").read_text() == steps
    assert again["scores"]["J&F"] == summary["scores"]["J&F"]

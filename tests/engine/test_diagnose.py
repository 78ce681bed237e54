"""The diagnosis of a model's score: its own output, the top-1 and oracle queries, and the mask-grid ceiling."""

from rvos.engine.diagnose import ROWS, diagnose

from contract import KEEP_ALL, random_model, tiny_config


def test_diagnosis_scores_every_row_by_kind_and_the_oracle_bounds_the_single_queries(synth_root):
    cfg = tiny_config("vlm", KEEP_ALL)  # the benchmark's 96x160 frames at their size
    model = random_model(cfg)
    split_dir = synth_root / "valid_u"
    result = diagnose(model, cfg, split_dir, videos=["valid_u_00000", "valid_u_00001"], progress=False)
    assert set(result) == set(ROWS)
    for row in ROWS:
        assert 0 <= result[row]["all"] <= 1 and len(result[row]) > 1  # "all" and at least one kind
    assert result["oracle"]["all"] >= result["top1"]["all"]  # the oracle picks among the same queries
    assert result["ceiling"]["all"] > 0.85 > result["oracle"]["all"]  # random weights segment nothing well

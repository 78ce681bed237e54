"""Inference: windows match the whole video, splits are predicted in the eval layout, bad input is contained."""

import json

import numpy as np
import pytest

from rvos.cli import main
from rvos.config import load_config
from rvos.data.frames import read_label_png
from rvos.data.splits import open_split
from rvos.data.synth.generate import SynthSpec, write_benchmark
from rvos.engine.checkpoint import save_model
from rvos.engine.inference import Predictor, split_source

from contract import KEEP_ALL, random_model


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_benchmark(root, SynthSpec(train=1, valid_u=3, valid=1, frames=10, height=48, width=64, seed=2),
                    progress=False)
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = load_config("vlm_tiny_synth", ["data.short_side=48", "data.max_long_side=64", "infer.window=4",
                                         KEEP_ALL])
    model = random_model(cfg)  # random weights, every query passes: the masks are not empty
    out = tmp_path_factory.mktemp("model")
    save_model(out, model, cfg)
    return out, model, cfg


def test_windows_match_the_whole_video(bench, model_dir):
    _, model, cfg = model_dir
    split = open_split(bench / "valid_u")
    name = next(iter(split.videos))
    texts = [e.text for e in split.video(name).expressions.values()]
    whole = list(Predictor(model, cfg, window=10).predict(split_source(split, name), texts))
    windowed = list(Predictor(model, cfg, window=3).predict(split_source(split, name), texts))
    assert len(whole) == len(windowed) == 10
    masks_whole = np.stack([f.masks for f in whole])
    masks_windowed = np.stack([f.masks for f in windowed])
    assert masks_whole.any() and masks_whole.shape == (10, len(texts), 48, 64)
    assert (masks_whole != masks_windowed).mean() < 1e-4  # float reassociation may flip a boundary pixel
    np.testing.assert_allclose([f.scores for f in whole], [f.scores for f in windowed], atol=1e-5)


def test_infer_writes_the_eval_layout_and_skips_finished_videos(bench, model_dir, tmp_path, capsys):
    path, _, _ = model_dir
    out = tmp_path / "pred"
    assert main(["-q", "infer", "--weights", str(path), "--split-dir", str(bench / "valid_u"), "--out", str(out)]) == 0
    assert "predicted 3 videos" in capsys.readouterr().out
    assert main(["-q", "eval", "--gt", str(bench / "valid_u"), "--pred", str(out)]) == 0
    assert main(["-q", "infer", "--weights", str(path), "--split-dir", str(bench / "valid_u"), "--out", str(out)]) == 0
    assert "predicted 0 videos" in capsys.readouterr().out
    assert not list(out.glob(".*.partial"))


def test_a_bad_video_is_reported_and_the_others_are_kept(bench, model_dir, tmp_path, capsys):
    path, _, _ = model_dir
    split_dir = tmp_path / "valid_u"
    import shutil

    shutil.copytree(bench / "valid_u", split_dir)
    meta = json.loads((split_dir / "meta_expressions.json").read_text())
    names = list(meta["videos"])
    (split_dir / "JPEGImages" / names[1] / "00004.jpg").write_bytes(b"broken")
    first = next(iter(meta["videos"][names[2]]["expressions"]))
    meta["videos"][names[2]]["expressions"][first]["exp"] = "   "  # an empty sentence
    (split_dir / "meta_expressions.json").write_text(json.dumps(meta))
    out = tmp_path / "pred"
    assert main(["-q", "infer", "--weights", str(path), "--split-dir", str(split_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1 of 3 videos could not be predicted" in err and names[1] in err and "00004.jpg" in err
    assert (out / names[0]).is_dir() and not (out / names[1]).exists() and (out / names[2]).is_dir()
    empty = [read_label_png(p) for p in (out / names[2] / first).glob("*.png")]
    assert len(empty) == 10 and not any(e.any() for e in empty)


def test_a_video_shorter_than_a_training_clip_is_predicted_whole(model_dir):
    _, model, cfg = model_dir
    from rvos.engine.inference import VideoSource

    frame = np.full((1, 40, 50, 3), 120, np.uint8)
    source = VideoSource(1, (40, 50), lambda idx: np.repeat(frame, len(list(idx)), 0))
    (result,) = list(Predictor(model, cfg).predict(source, ["the object", ""]))
    assert result.masks.shape == (2, 40, 50) and not result.masks[1].any() and result.scores[1] == 0

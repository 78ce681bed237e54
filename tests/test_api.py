"""The Python API and `rvos predict` on users' own videos: formats, streaming, and bad input."""

import json

import numpy as np
import pytest

from rvos import Segmenter
from rvos.cli import main
from rvos.config import load_config
from rvos.data.frames import write_frame
from rvos.engine.checkpoint import save_model
from rvos.errors import CheckpointError, DataError
from rvos.viz.video_io import write_video

from contract import KEEP_ALL, random_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # random weights whose masks cover part of the test clip (with the tiny config's large token embeddings a
    # random model's masks are empty or cover everything, depending on the seed)
    cfg = load_config("vlm_tiny_synth", ["infer.window=4", "model.backbone.token_init_std=null", KEEP_ALL])
    model = random_model(cfg)
    path = tmp_path_factory.mktemp("model")
    save_model(path, model, cfg)
    return path


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(0)
    frames = rng.integers(60, 90, (7, 48, 80, 3), dtype=np.uint8)
    for t in range(7):
        frames[t, 10:30, 5 + 6 * t:25 + 6 * t] = (220, 40, 40)
    return frames


def test_segmenter_on_an_array_gives_masks_and_scores_per_frame(model_dir, clip):
    seg = Segmenter.from_pretrained(model_dir)
    result = seg(clip, "the red square moving right")
    assert result.masks.shape == (7, 48, 80) and result.masks.dtype == bool and result.masks.any()
    assert result.scores.shape == (7,) and result.text == "the red square moving right"
    both = seg(clip, ["the red square", "the background"])
    assert [r.text for r in both] == ["the red square", "the background"]
    streamed = list(seg.stream(clip, ["the red square moving right"]))
    assert [f.index for f in streamed] == list(range(7))
    np.testing.assert_array_equal(np.stack([f.masks[0] for f in streamed]), result.masks)


@pytest.mark.parametrize("kind", ["mp4", "gif", "folder"])
def test_videos_load_from_files_gifs_and_folders(model_dir, clip, tmp_path, kind):
    if kind == "folder":
        path = tmp_path / "frames"
        for t, f in enumerate(clip):
            write_frame(path / f"{t:03d}.png", f)
    else:
        path = write_video(tmp_path / f"clip.{kind}", list(clip), fps=5)
    result = Segmenter.from_pretrained(model_dir)(path, "the red square")
    assert result.masks.shape == (7, 48, 80)


def test_predict_writes_masks_overlay_and_scores(model_dir, clip, tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", list(clip), fps=5)
    out = tmp_path / "out"
    assert main(["-q", "predict", str(video), "--text", "the red square", "--text", "the left edge",
                 "--weights", str(model_dir), "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert [s["text"] for s in result["sentences"]] == ["the red square", "the left edge"]
    assert result["frames"] == 7 and len(result["scores"]) == 7
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["0_the_red_square", "1_the_left_edge"]
    assert len(list((out / "masks" / "0_the_red_square").glob("*.png"))) == 7
    assert (out / "overlay.mp4").stat().st_size > 1000
    import cv2

    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    assert "overlay video" in capsys.readouterr().out


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("broken", ["--text", "a dog"], "not a readable video"),
        ("empty_folder", ["--text", "a dog"], "holds no frames"),
        ("txt", ["--text", "a dog"], "unsupported format .txt"),
        ("mp4", ["--text", "  "], "none of them empty"),
        ("mp4", [], "give each sentence with --text"),
    ],
)
def test_bad_predict_input_is_a_clear_error_and_writes_nothing(model_dir, clip, tmp_path, capsys, setup, args, message):
    paths = {"broken": tmp_path / "broken.mp4", "empty_folder": tmp_path / "empty", "txt": tmp_path / "notes.txt",
             "mp4": tmp_path / "ok.mp4"}
    paths["broken"].write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    paths["empty_folder"].mkdir()
    paths["txt"].write_text("hello")
    write_video(paths["mp4"], list(clip), fps=5)
    out = tmp_path / "out"
    code = main(["-q", "predict", str(paths[setup]), *args, "--weights", str(model_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_checkpoint_of_another_model_or_a_corrupt_one_is_refused(model_dir, clip, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["config"]["model"]["hidden_dim"] = 32
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not fit"):
        Segmenter.from_pretrained(other)
    (other / "model.safetensors").write_bytes(b"corrupt")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        Segmenter.from_pretrained(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        Segmenter.from_pretrained(tmp_path / "missing")


def test_an_existing_output_is_kept_unless_overwrite(model_dir, clip, tmp_path, capsys):
    video = write_video(tmp_path / "clip.gif", list(clip), fps=5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["-q", "predict", str(video), "--text", "a square", "--weights", str(model_dir),
                 "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "mine.txt").read_text() == "keep me"
    assert main(["-q", "predict", str(video), "--text", "a square", "--weights", str(model_dir),
                 "--out", str(out), "--overwrite", "--no-video"]) == 0
    assert (out / "result.json").is_file() and not (out / "mine.txt").exists() and not (out / "overlay.mp4").exists()


def test_array_input_is_checked():
    with pytest.raises(DataError, match=r"\(T, H, W, 3\)"):
        Segmenter.source(np.zeros((4, 10, 10), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        Segmenter.source(np.zeros((4, 10, 10, 3), np.float32))


def test_readme_example_runs(model_dir, clip, tmp_path):
    """The README's Python example, verbatim apart from the paths."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    video = write_video(tmp_path / "my_video.mp4", list(clip), fps=5)
    code = code.replace('"demo/run"', repr(str(model_dir))).replace('"my_video.mp4"', repr(str(video)))
    exec(compile(code, "README.md", "exec"), {})


def test_predict_reports_frames_it_cannot_decode_and_strict_refuses_them(model_dir, tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = write_video(tmp_path / "clip.mp4", list(rng.integers(0, 255, (12, 48, 80, 3), dtype=np.uint8)),
                       fps=5).read_bytes()
    video = tmp_path / "cut.mp4"
    video.write_bytes(data[: int(len(data) * 0.6)])  # a download cut short
    out = tmp_path / "out"
    assert main(["-q", "predict", str(video), "--text", "a square", "--weights", str(model_dir), "--out", str(out),
                 "--strict", "--no-video"]) == 2
    err = capsys.readouterr().err
    assert "of the 12 frames the file holds cannot be decoded" in err and "--strict" in err
    assert not out.exists()
    assert main(["-q", "predict", str(video), "--text", "a square", "--weights", str(model_dir), "--out", str(out),
                 "--no-video"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert 0 < result["frames"] < 12 and result["unreadable_frames"] == list(range(result["frames"], 12))
    assert len(result["warnings"]) == 1 and "cannot be decoded" in result["warnings"][0]
    assert len(list((out / "masks" / "0_a_square").glob("*.png"))) == result["frames"]

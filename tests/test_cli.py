import subprocess
import sys

from rvos.cli import main


def test_synth_command_writes_a_benchmark_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["-q", "synth", str(tmp_path / "b"), "--train", "2", "--valid-u", "1", "--valid", "1",
                 "--frames", "6", "--height", "48", "--width", "64"]) == 0
    assert "wrote 2 train" in capsys.readouterr().out
    assert (tmp_path / "b" / "train" / "JPEGImages" / "train_00001" / "00005.jpg").is_file()
    assert main(["-q", "synth", str(tmp_path / "b")]) == 2
    assert "already holds a dataset" in capsys.readouterr().err


def test_errors_exit_nonzero_without_traceback_unless_debug(tmp_path):
    cmd = [sys.executable, "-m", "rvos.cli", "eval", "--gt", str(tmp_path / "missing"), "--pred", str(tmp_path)]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 2
    assert plain.stderr.strip() == f"error: split folder {tmp_path / 'missing'} does not exist"
    debug = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DataError" in debug.stderr


# --------------------------------------------------------------------------- noise, early checks, SIGTERM

import signal  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rvos.config import load_config  # noqa: E402
from rvos.engine.checkpoint import save_model  # noqa: E402
from rvos.viz.video_io import write_video  # noqa: E402

from contract import KEEP_ALL, random_model  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = load_config("vlm_tiny_synth", ["infer.window=4", KEEP_ALL])
    path = tmp_path_factory.mktemp("model")
    save_model(path, random_model(cfg), cfg)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(0)
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4",
                       list(rng.integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)), fps=5)


def test_run_pointing_at_a_file_says_what_to_give(model_dir, video, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a model")
    assert main(["-q", "predict", str(video), "--text", "a dog", "--run", str(tmp_path / "notes.txt"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "notes.txt: this is a file, not a model" in err and "does not exist" not in err
    # the weights file of a model folder is fine
    assert main(["-q", "predict", str(video), "--text", "a dog", "--weights", str(model_dir / "model.safetensors"),
                 "--out", str(tmp_path / "out"), "--no-video"]) == 0


def test_an_existing_output_is_refused_before_the_model_is_loaded(video, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    # the model does not exist: had it been loaded first, that would be the error
    assert main(["-q", "predict", str(video), "--text", "a dog", "--weights", str(tmp_path / "no_model"),
                 "--out", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["-q", "infer", "--weights", str(tmp_path / "no_model"), "--split-dir", str(tmp_path / "no_split"),
                 "--out", str(out)]) == 2
    assert "split folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["-q", "predict", str(video), "--text", "a dog", "--weights", str(tmp_path / "no_model"),
                 "--out", str(tmp_path / "file")]) == 2
    assert "is a file: --out takes a folder" in capsys.readouterr().err


def _wait_for(predicate, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"the command ended first: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out")


def test_sigterm_during_synth_removes_the_partial_folder(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.Popen([sys.executable, "-m", "rvos.cli", "-q", "synth", str(out), "--train", "5000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / ".train.partial").is_dir() and any((out / ".train.partial").iterdir()), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and err.strip() == "terminated"
    assert list(out.iterdir()) == []


def test_sigterm_during_predict_removes_the_partial_folder(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    long_video = write_video(tmp_path / "long.mp4", list(rng.integers(0, 255, (100, 32, 48, 3), dtype=np.uint8)))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "rvos.cli", "-q", "predict", str(long_video), "--text", "a dog",
                             "--weights", str(model_dir), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / ".out.partial"
    _wait_for(partial.is_dir, proc)  # the model is loaded and the video streaming through it
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and err.strip() == "terminated"
    assert not partial.exists() and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]


def test_serve_prints_its_address_and_no_one_elses_messages(model_dir):
    pytest.importorskip("gradio", reason="the 'web' extra is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # without -q: rvos's own INFO messages may show, but not open_clip's nor Gradio's
    proc = subprocess.Popen([sys.executable, "-m", "rvos.cli", "serve", "--run", str(model_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert line == f"serving on http://127.0.0.1:{port}/ (Ctrl+C to stop)\n"
    assert out == "" and err.strip() == "terminated"

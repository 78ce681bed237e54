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

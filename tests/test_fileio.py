import os
import stat

import pytest

from rvos.fileio import UMASK, atomic_folder, atomic_path, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "scores.json"
    write_json(target, {"J": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"J": ')  # half-written
            raise RuntimeError("killed")
    assert target.read_text() == '{"J": 1}' and os.listdir(tmp_path) == ["scores.json"]


def test_written_files_have_an_ordinary_mode(tmp_path):
    target = tmp_path / "report" / "report.md"
    write_text(target, "# report\n")
    assert target.read_text() == "# report\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~UMASK


def test_a_failed_folder_write_leaves_the_old_folder(tmp_path):
    target = tmp_path / "video"
    with atomic_folder(target) as tmp:
        write_text(tmp / "00000.png", "old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            write_text(tmp / "00000.png", "new")
            raise RuntimeError("killed")
    assert (target / "00000.png").read_text() == "old" and os.listdir(tmp_path) == ["video"]
    with atomic_folder(target) as tmp:
        write_text(tmp / "00001.png", "new")
    assert os.listdir(target) == ["00001.png"]  # replaced whole, not merged

"""Video files are never silently cut short or silently damaged: the tests write truncated, corrupt and
damaged files and check what is read and what is reported."""

import struct
import subprocess

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from rvos.data import decoding
from rvos.data.video import open_video
from rvos.viz.video_io import write_video


def _noise_mp4(path, frames=30):
    rng = np.random.default_rng(0)
    return write_video(path, [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(frames)], fps=10)


def _mjpeg_avi(path, frames):
    """An MJPEG AVI of ffmpeg's test pattern, written by the ffmpeg imageio-ffmpeg ships."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=32x24:rate=10", "-frames:v", str(frames), "-c:v", "mjpeg", str(path)], check=True)
    return path


def _frame_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each video frame's data in an AVI's 'movi' list, in order."""
    pos = data.index(b"movi") + 4
    chunks = []
    while pos + 8 <= len(data) and data[pos:pos + 4] != b"idx1":
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid.endswith(b"dc"):
            chunks.append((pos + 8, size))
        pos += 8 + size + (size & 1)
    return chunks


def _read_all(source):
    return source.read(range(source.num_frames))


def test_a_clean_file_reads_every_frame_without_warnings(tmp_path):
    source = open_video(_noise_mp4(tmp_path / "ok.mp4"))
    assert (source.num_frames, source.warnings, source.unreadable_frames, source.damaged_frames) == (30, [], [], [])
    assert _read_all(source).shape == (30, 96, 128, 3)


def test_a_truncated_mp4_reads_what_is_left_and_names_the_lost_frames(tmp_path):
    data = _noise_mp4(tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    source = open_video(tmp_path / "cut.mp4")
    assert 0 < source.num_frames < 30
    assert source.unreadable_frames == list(range(source.num_frames, 30))
    assert len(source.warnings) == 1
    assert f"{30 - source.num_frames} of the 30 frames the file holds cannot be decoded" in source.warnings[0]
    full = open_video(tmp_path / "ok.mp4")
    np.testing.assert_array_equal(_read_all(source)[:5], full.read(range(5)))


def test_when_opencv_gives_up_ffmpeg_reads_the_rest(tmp_path):
    # 560 undecodable frames in a row: OpenCV stops after about 512 failed packets (as with its sample tree.avi),
    # ffmpeg skips them and decodes the 20 frames after them
    original = _mjpeg_avi(tmp_path / "ok.avi", 600)
    data = bytearray(original.read_bytes())
    for offset, size in _frame_chunks(bytes(data))[20:580]:
        data[offset:offset + size] = bytes(size)
    (tmp_path / "bad.avi").write_bytes(data)
    assert decoding.cv2_count(tmp_path / "bad.avi")[0] == 20  # OpenCV alone would cut the video here
    source = open_video(tmp_path / "bad.avi")
    assert source.num_frames == 40 and source.unreadable_frames == list(range(20, 580))
    assert "560 of the 600 frames" in source.warnings[0] and "frames 20-579" in source.warnings[0]
    good = open_video(original)
    np.testing.assert_array_equal(source.read([19, 20, 39]), good.read([19, 580, 599]))
    np.testing.assert_array_equal(source.read([0]), good.read([0]))  # reading backwards restarts the decoder


def test_damaged_frames_are_reported(tmp_path):
    data = bytearray(_mjpeg_avi(tmp_path / "ok.avi", 30).read_bytes())
    offset, size = _frame_chunks(bytes(data))[12]
    for k in range(size // 2, size - 10, 7):  # scramble the second half of frame 12's entropy-coded data
        data[offset + k] ^= 0x5A
    (tmp_path / "damaged.avi").write_bytes(data)
    source = open_video(tmp_path / "damaged.avi")
    assert source.num_frames == 30 and source.unreadable_frames == []
    # the errors are logged as the decoder meets them, up to a few frames before frame 12 leaves it (threads), and one
    # damaged frame can be logged at more than one point (CI once saw frames 10 and 12)
    damaged = source.damaged_frames
    assert damaged and all(12 - 4 <= k <= 12 for k in damaged)
    warning = source.warnings[0]
    assert "the decoder reported errors from about frame" in warning and f" {damaged[0]}" in warning


def test_opencv_prints_nothing_of_its_own(tmp_path):
    data = _noise_mp4(tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    # a fresh process: the ffmpeg inside OpenCV reads its log level once
    code = ("import logging, sys; logging.disable(logging.WARNING); from rvos.data.video import open_video; "
            f"s = open_video({str(tmp_path / 'cut.mp4')!r}); s.read(range(s.num_frames))")
    out = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == "" and out.stdout == ""


@pytest.mark.parametrize("size", [0, 40])
def test_a_file_with_no_decodable_frame_is_an_error(tmp_path, size):
    from rvos.errors import DataError

    data = _noise_mp4(tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "stub.mp4").write_bytes(data[:size])
    with pytest.raises(DataError, match="stub.mp4 (is not a readable video|holds no frames)"):
        open_video(tmp_path / "stub.mp4")


def test_cv2_decodes_frames_as_the_ffmpeg_reader_does(tmp_path):
    path = _noise_mp4(tmp_path / "ok.mp4", frames=5)
    reader = decoding.FFmpegReader(path, (96, 128))
    cap = cv2.VideoCapture(str(path))
    for t in range(5):
        ok, frame = cap.read()
        np.testing.assert_array_equal(reader.read([t])[0], cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))

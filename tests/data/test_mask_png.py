"""Prediction PNGs read the same through libspng (the fast path for 8-bit greyscale) and OpenCV, for every kind of
PNG a prediction may come as, and a broken file is a DataError on both paths."""

import numpy as np
import pytest
from PIL import Image

from rvos.data import frames
from rvos.data.frames import read_label_png
from rvos.errors import DataError


def _files(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    values[:3] = 0
    binary = values > 128
    palette = Image.fromarray((values % 4).astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0, 0, 0, 200] + [0] * 756)
    kinds = {
        "grey 0/255": (Image.fromarray(binary.astype(np.uint8) * 255), binary.astype(np.uint8) * 255),
        "grey any value": (Image.fromarray(values), values),
        "1-bit": (Image.fromarray(binary), binary.astype(np.uint8) * 255),
        "palette": (palette, values % 4),
        "rgb": (Image.fromarray(np.stack([values * 0, values, values * 0], -1)), (values > 0).astype(np.uint8)),
    }
    out = {}
    for name, (image, expected) in kinds.items():
        path = tmp_path / f"{name.replace('/', '-').replace(' ', '_')}.png"
        image.save(path)
        out[name] = (path, expected)
    return out


@pytest.fixture(params=["libspng", "opencv"])
def decoder(request, monkeypatch):
    """Each test runs with libspng decoding 8-bit grey PNGs (where pyspng has a wheel), then with OpenCV alone."""
    if request.param == "libspng" and frames.pyspng is None:
        pytest.skip("pyspng has no wheel for this platform")
    if request.param == "opencv":
        monkeypatch.setattr(frames, "pyspng", None)
    return request.param


def test_every_png_kind_reads_the_same_with_either_decoder(tmp_path, decoder):
    for name, (path, expected) in _files(tmp_path).items():
        np.testing.assert_array_equal(read_label_png(path), expected, err_msg=name)


def test_a_truncated_png_is_a_data_error(tmp_path, decoder):
    path, _ = _files(tmp_path)["grey any value"]
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match="not a readable"):
        read_label_png(path)

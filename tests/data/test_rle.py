import numpy as np
import pytest
from pycocotools import mask as coco_mask

from rvos.data import rle
from rvos.data.masks import RunLengthMask
from rvos.errors import DataError


def random_masks(seed, n=200):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(1, 70, size=2))
        kind = rng.integers(4)
        if kind == 0:
            m = rng.random((h, w)) < rng.random()
        elif kind == 1:
            m = np.zeros((h, w), bool)
        elif kind == 2:
            m = np.ones((h, w), bool)
        else:
            yy, xx = np.mgrid[:h, :w]
            m = (yy - rng.integers(h)) ** 2 + (xx - rng.integers(w)) ** 2 < rng.integers(1, 900)
        yield m


def test_decode_matches_pycocotools_on_random_masks():
    for m in random_masks(0):
        encoded = rle.encode(m)
        ours = rle.decode(encoded, m.shape, "test")
        theirs = coco_mask.decode({"size": encoded["size"], "counts": encoded["counts"].encode()})
        np.testing.assert_array_equal(ours, theirs.astype(bool))
        np.testing.assert_array_equal(ours, m)


def test_uncompressed_counts_are_accepted():
    m = np.array([[0, 1], [1, 1]], bool)  # column-major: 0, 1 | 1, 1 -> runs [1, 3]
    np.testing.assert_array_equal(rle.decode({"size": [2, 2], "counts": [1, 3]}, (2, 2), "t"), m)


def test_run_length_mask_crops_and_boxes_match_the_dense_union():
    rng = np.random.default_rng(1)
    masks = list(random_masks(2, 60))
    for a in masks:
        b = rng.random(a.shape) < 0.05
        union = RunLengthMask([rle.parse(rle.encode(a), a.shape, "a"), rle.parse(rle.encode(b), b.shape, "b")], a.shape)
        dense = a | b
        np.testing.assert_array_equal(union.to_array(), dense)
        if dense.any():
            ys, xs = np.nonzero(dense)
            assert union.box == (ys.min(), ys.max(), xs.min(), xs.max())
            y0, x0 = rng.integers(0, a.shape[0]), rng.integers(0, a.shape[1])
            region = (y0, a.shape[0], x0, a.shape[1])
            np.testing.assert_array_equal(union.crop(region), dense[y0:, x0:])
        else:
            assert union.box is None


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"size": [4, 4], "counts": "PP"}, "corrupt RLE counts"),
        ({"size": [4, 4], "counts": "1"}, "corrupt RLE counts"),  # covers 1 pixel of 16
        ({"size": [4, 5], "counts": "0`0"}, "does not match the frame size"),
        ({"counts": "1"}, "expected an RLE object"),
        ({"size": [4, 4], "counts": 3.5}, "corrupt RLE counts"),
    ],
)
def test_malformed_rles_raise_a_data_error_naming_the_entry(entry, message):
    with pytest.raises(DataError, match=message) as info:
        rle.decode(entry, (4, 4), "mask_dict.json, anno_id 7")
    assert "anno_id 7" in str(info.value)


def test_counts_parse_as_cocos_loop_does_on_large_masks_and_negative_deltas():
    # the vectorised parser against COCO's per-character rule (written out here), on strings pycocotools wrote
    def coco_rule(counts: bytes) -> list[int]:
        numbers, x, shift = [], 0, 0
        for byte in counts:
            c = byte - 48
            x |= (c & 0x1F) << shift
            shift += 5
            if not c & 0x20:
                if c & 0x10:
                    x |= -1 << shift
                numbers.append(x + (numbers[-2] if len(numbers) > 2 else 0))
                x = shift = 0
        return numbers

    rng = np.random.default_rng(5)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(100, 400, size=2))
        m = np.zeros((h, w), bool)
        for _ in range(rng.integers(1, 6)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            m[y:y + rng.integers(1, h), x:x + rng.integers(1, w)] ^= True
        counts = rle.encode(m)["counts"].encode()
        assert rle.parse_counts(counts).tolist() == coco_rule(counts)


def test_a_number_too_long_for_64_bits_is_refused():
    assert rle.parse_counts(b"P" * 11 + b"1").tolist() == [1 << 55]  # 12 characters: 60 bits fit
    with pytest.raises(ValueError, match="longer than 12"):
        rle.parse_counts(b"P" * 12 + b"1")

"""J and F against the DAVIS definitions: hand-worked cases, edge cases, and random masks against the
straightforward per-frame implementation."""

import numpy as np
import pytest

from rvos.eval import reference
from rvos.eval.metrics import bound_radius, disk, frame_scores, jaccard_and_f, seg2bmap


def seg2bmap_by_rule(seg):
    """The rule stated pixel by pixel: on the boundary iff different from an east/south/south-east neighbour
    inside the image, except that the last row compares east only and the last column south only."""
    h, w = seg.shape
    b = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1:
                nbrs = [(y, x + 1)] if x + 1 < w else []
            elif x == w - 1:
                nbrs = [(y + 1, x)]
            else:
                nbrs = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
            b[y, x] = any(seg[y, x] != seg[n] for n in nbrs)
    return b


def test_boundary_of_a_single_pixel_is_offset_up_and_left():
    seg = np.zeros((6, 6), bool)
    seg[2, 2] = True
    assert set(zip(*np.nonzero(seg2bmap(seg)))) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    seg = np.zeros((6, 6), bool)
    seg[5, 5] = True  # bottom-right corner pixel
    assert set(zip(*np.nonzero(seg2bmap(seg)))) == {(4, 4), (4, 5), (5, 4)}


def test_boundary_map_matches_the_rule_and_the_shift_form():
    rng = np.random.default_rng(0)
    for _ in range(100):
        seg = rng.random(tuple(rng.integers(1, 12, size=2))) < rng.random()
        expected = seg2bmap_by_rule(seg)
        np.testing.assert_array_equal(seg2bmap(seg), expected)
        np.testing.assert_array_equal(reference.seg2bmap(seg), expected)


def test_disk_is_skimage_disk_not_an_opencv_ellipse():
    assert disk(8).sum() == 197  # cv2.getStructuringElement(MORPH_ELLIPSE, (17, 17)) has 213
    assert disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert [bound_radius(360, 640), bound_radius(480, 854), bound_radius(720, 1280)] == [6, 8, 12]


def test_empty_masks():
    empty = np.zeros((20, 30), bool)
    blob = empty.copy()
    blob[5:10, 5:10] = True
    assert frame_scores(empty, empty) == (1.0, 1.0)  # both empty: perfect
    assert frame_scores(blob, empty) == (0.0, 0.0)  # missed object
    assert frame_scores(empty, blob) == (0.0, 0.0)  # hallucinated object


def test_full_frame_masks_have_no_boundary():
    full = np.ones((20, 30), bool)
    empty = np.zeros((20, 30), bool)
    blob = empty.copy()
    blob[5:10, 5:10] = True
    assert frame_scores(full, full) == (1.0, 1.0)
    assert frame_scores(full, empty) == (0.0, 1.0)  # DAVIS: neither has a boundary, so F = 1
    j, f = frame_scores(full, blob)
    assert j == pytest.approx(25 / 600) and f == 0.0


def test_masks_touching_the_border():
    gt = np.zeros((40, 40), bool)
    gt[30:, 25:] = True  # touches the bottom and right edges
    pred = np.zeros((40, 40), bool)
    pred[31:, 26:] = True
    j, f = frame_scores(gt, pred)
    assert j == pytest.approx(9 * 14 / (10 * 15))
    assert f == pytest.approx(reference.f_measure(pred, gt))
    # radius 1 on a 40x40 image is a plus-shaped disk: the straight edges match, the diagonal corner does not
    assert 0.95 < f < 1.0


def test_boundary_tolerance_is_the_disk_radius():
    h, w = 360, 640  # radius 6
    gt = np.zeros((h, w), bool)
    gt[100:200, 100:200] = True
    for shift, inside in ((6, True), (7, False)):
        pred = np.roll(gt, shift, axis=1)
        _, f = frame_scores(gt, pred)
        # the shifted vertical edges match only within the radius; horizontal edges always overlap mostly
        assert (f > 0.99) == inside


def test_fast_metrics_equal_the_reference_on_random_masks():
    rng = np.random.default_rng(1)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 80, size=2))
        yy, xx = np.mgrid[:h, :w]

        def blob():
            m = np.zeros((h, w), bool)
            for _ in range(rng.integers(0, 3)):
                m |= (yy - rng.integers(-5, h + 5)) ** 2 + (xx - rng.integers(-5, w + 5)) ** 2 < rng.integers(1, 400)
            return m if rng.random() > 0.2 else rng.random((h, w)) < 0.3

        gt, pred = np.stack([blob(), blob()]), np.stack([blob(), blob()])
        js, fs = jaccard_and_f(gt, pred)
        for t in range(2):
            assert abs(js[t] - reference.db_eval_iou(gt[t], pred[t])) <= 1e-12
            assert abs(fs[t] - reference.f_measure(pred[t], gt[t])) <= 1e-12

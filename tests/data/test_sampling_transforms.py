import numpy as np
import pytest

from rvos.data.sampling import global_indices, local_indices, uniform_indices
from rvos.data.transforms import ClipTransform, resized_shape, swap_left_right


def test_local_sampling_stays_near_a_reference_frame():
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = local_indices(50, 5, frame_range=3, rng=rng)
        assert len(idx) == 5 and idx == sorted(idx)
        assert max(idx) - min(idx) <= 6  # all within +-3 of the reference frame


def test_global_sampling_draws_one_frame_per_segment():
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = global_indices(40, 8, rng)
        assert [i // 5 for i in idx] == list(range(8))  # segment k of 40/8 frames holds frame k


def test_sampling_a_video_shorter_than_the_clip_repeats_frames():
    rng = np.random.default_rng(0)
    assert len(local_indices(2, 5, 3, rng)) == 5 and set(local_indices(2, 5, 3, rng)) <= {0, 1}
    assert len(global_indices(3, 8, rng)) == 8 and max(global_indices(3, 8, rng)) <= 2
    assert uniform_indices(1, 4) == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "text, flipped",
    [
        ("the dog running to the left", "the dog running to the right"),
        ("Left ball moves rightward", "Right ball moves leftward"),
        ("the leftmost car, then right-hand one", "the rightmost car, then left-hand one"),
        ("the bright light", "the bright light"),  # 'bright' is not 'right'
    ],
)
def test_flip_swaps_left_and_right_words(text, flipped):
    assert swap_left_right(text) == flipped


def test_resize_keeps_the_short_side_unless_the_long_side_exceeds_its_cap():
    assert resized_shape(720, 1280, 360, 640) == (360, 640)
    assert resized_shape(480, 1920, 360, 640) == (160, 640)  # capped by the long side
    assert resized_shape(96, 160, 96, 160) == (96, 160)


def test_clip_transform_applies_one_flip_to_frames_masks_and_text():
    frames = np.zeros((3, 10, 20, 3), np.uint8)
    frames[:, :, :5] = 200  # bright on the left
    masks = np.zeros((3, 10, 20), bool)
    masks[:, :, :5] = True
    transform = ClipTransform(short_side=10, max_long_side=20, flip_prob=1.0, brightness=0.2)
    out_f, out_m, text = transform(frames, masks, "the object on the left", np.random.default_rng(0))
    assert text == "the object on the right"
    assert out_m[:, :, -5:].all() and not out_m[:, :, :-5].any()
    assert (out_f[:, :, -5:].mean() > out_f[:, :, :-5].mean())
    # the same brightness change on every frame of the clip
    assert len({int(f[0, -1, 0]) for f in out_f}) == 1

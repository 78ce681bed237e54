import pytest

# A run small enough for a test: a 6-video synthetic benchmark of 6-frame 48x64 videos, clips of 4 frames.
TINY = [
    "data.synth.train=4", "data.synth.valid_u=2", "data.synth.valid=1", "data.synth.frames=6",
    "data.synth.height=48", "data.synth.width=64", "data.short_side=48", "data.max_long_side=64",
    "data.num_frames=4", "data.workers=0", "train.batch_size=2", "train.log_period=1",
    "train.max_minutes=0", "train.warmup_iters=0",
]


@pytest.fixture
def tiny_overrides(tmp_path):
    return [f"data.root={tmp_path / 'data'}", *TINY]

"""The settings of a synthetic benchmark (:class:`SynthSpec`), apart from the generator so that the command line
reads its defaults without importing the generator's dependencies."""

from __future__ import annotations

from dataclasses import dataclass

from rvos.errors import DataError


@dataclass(frozen=True)
class SynthSpec:
    """Settings of a synthetic benchmark; ``OUT/synth.json`` holds them."""

    train: int = 2000  # the tiny configs' heads learnt 400 videos' objects by heart (synth_learning.md, 24th session)
    valid_u: int = 50
    valid: int = 50
    seed: int = 0
    frames: int = 24
    height: int = 96
    width: int = 160
    min_objects: int = 2
    max_objects: int = 5
    lookalike_prob: float = 0.6  # chance that a video holds a group of look-alikes told apart only by motion
    leave_prob: float = 0.25  # chance that a moving / turning object leaves the picture (and comes back)

    def count(self, split: str) -> int:
        return {"train": self.train, "valid_u": self.valid_u, "valid": self.valid}[split]

    def validate(self) -> None:
        if min(self.train, self.valid_u, self.valid) < 0:
            raise DataError("video counts must be zero or more")
        if self.frames < 2:
            raise DataError(f"--frames must be at least 2, got {self.frames}")
        if self.height < 32 or self.width < 32:
            raise DataError(f"frames must be at least 32x32 pixels, got {self.height}x{self.width}")
        if not 2 <= self.min_objects <= self.max_objects <= 8:
            raise DataError("need 2 <= min_objects <= max_objects <= 8")

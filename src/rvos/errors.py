"""Errors a user can cause.

Every error that comes from the user's input (a bad path, a malformed annotation file, a prediction of the wrong
size, an unknown config key, a checkpoint from another model) is an :class:`RvosError`. Its message says what is
wrong and what to do; the CLI prints it and exits non-zero without a traceback (``--debug`` shows one).
"""


class RvosError(Exception):
    """Base class of every error a user can cause and fix."""


class DataError(RvosError):
    """A dataset, video, frame or mask file is missing or malformed."""


class ConfigError(RvosError):
    """A config file or override is invalid."""


class CheckpointError(RvosError):
    """A checkpoint or pretrained-weights file is missing, corrupt, or from another model."""


class EvalError(RvosError):
    """Predictions cannot be evaluated against the ground truth (missing or wrong-size masks)."""

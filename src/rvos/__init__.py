"""rvos: referring video object segmentation.

``from rvos import Segmenter`` is the entry point for using a trained model; see :mod:`rvos.api`.
"""

from rvos.errors import RvosError

__version__ = "0.1.0"
__all__ = ["RvosError", "Segmenter", "Segmentation", "__version__"]


def __getattr__(name):  # the API imports torch: load it only when asked for
    if name in ("Segmenter", "Segmentation"):
        from rvos import api

        return getattr(api, name)
    raise AttributeError(f"module 'rvos' has no attribute {name!r}")

"""rvos: referring video object segmentation."""

from rvos.errors import RvosError

__version__ = "0.1.0"
__all__ = ["RvosError", "__version__"]

"""Reading and writing single frames and mask PNGs."""

from __future__ import annotations

import os
from pathlib import Path

# The ffmpeg inside OpenCV prints every decoder error to stderr, even with -q; rvos.data.decoding reports damaged
# and lost frames itself. Read at OpenCV's first VideoCapture, so set here, where cv2 is first imported; a user's
# own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from rvos.errors import DataError  # noqa: E402
from rvos.fileio import atomic_path  # noqa: E402

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Decoding threads in cv2 compete with torch and our own worker pools for 2 cores; frames are small.
cv2.setNumThreads(1)
if not os.environ.get("OPENCV_LOG_LEVEL"):
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV's own warnings, e.g. on a bad file


def read_frame(path: str | os.PathLike, exif_orientation: bool = True) -> np.ndarray:
    """An RGB frame (H, W, 3) uint8; a clear error when the file is missing or not an image. A JPEG's EXIF
    orientation is applied unless ``exif_orientation`` is False (COCO's annotations, as PIL reads the images, are
    on the stored pixel grid)."""
    data = np.fromfile(str(path), dtype=np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise DataError(f"frame {path} does not exist")
    flags = cv2.IMREAD_COLOR if exif_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise DataError(f"frame {path} is not a readable image (corrupt or empty file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image, read from its header only."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError:
        raise DataError(f"frame {path} does not exist") from None
    except Exception as exc:
        raise DataError(f"frame {path} is not a readable image ({exc})") from exc
    return height, width


try:  # libspng decodes PNGs about 3x faster than OpenCV's libpng; evaluation time is mostly PNG decoding
    import pyspng
except ImportError:  # no wheel for this platform: OpenCV decodes every PNG
    pyspng = None


def _png_header(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG, or None for another format."""
    # PNG signature (8) + IHDR length (4) + b"IHDR" (4) + width (4) + height (4) -> bit depth at 24, colour type 25.
    if len(data) > 25 and data[:8] == b"\x89PNG\r\n\x1a\n":
        return data[24], data[25]
    return None


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """A label image (H, W) with the values the file stores: palette indices for palette PNGs (the DAVIS/YouTube-VOS
    annotation convention), grey levels for greyscale PNGs, and for an RGB(A) file any non-zero channel as 1."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"mask {path} does not exist") from None
    depth, color_type = _png_header(data) or (None, None)
    if color_type == 0 and depth == 8 and pyspng is not None:  # 8-bit greyscale, what predictions are written as
        try:
            return pyspng.load(data)
        except Exception as exc:
            raise DataError(f"mask {path} is not a readable PNG ({exc})") from exc
    if color_type == 3:  # palette: the pixel value is the index, not the colour
        try:
            with Image.open(path) as im:
                return np.asarray(im)
        except Exception as exc:
            raise DataError(f"mask {path} is not a readable PNG ({exc})") from exc
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if image is None:
        raise DataError(f"mask {path} is not a readable image (corrupt or empty file)")
    if image.ndim == 3:
        image = image[..., :3].any(axis=-1).astype(np.uint8)
    return image


def write_mask_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """A binary mask as an 8-bit PNG with values 0 and 255, written atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), mask.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise DataError(f"could not write {path}")


def write_frame(path: str | os.PathLike, frame: np.ndarray, quality: int = 95) -> None:
    """An RGB frame as JPEG (or PNG, by suffix), written atomically."""
    with atomic_path(path) as tmp:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality] if Path(path).suffix.lower() in (".jpg", ".jpeg") else []
        if not cv2.imwrite(str(tmp), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise DataError(f"could not write {path}")

"""Reading one image file and decoding it robustly into a small BGR array.

Decoding goes through Pillow because it reads headers without decoding (so decompression bombs are
refused before any pixel is allocated), applies EXIF orientation, and decodes JPEGs at a reduced DCT
scale (``draft``), which is most of the speed of a build over large photos.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

#: Larger images are refused unread: a decoded 100-megapixel RGB image is already 300 MB.
MAX_PIXELS = 100_000_000
#: Larger files are refused: no image within MAX_PIXELS needs more (100 MP of 16-bit RGBA is 800 MB),
#: and a file that keeps growing is not read without end.
MAX_FILE_BYTES = 1 << 30

ImageInput = str | os.PathLike | bytes | np.ndarray


class ImageError(ValueError):
    """An input that is not a usable image; the message says why in a few words."""


@dataclass(frozen=True)
class FileInfo:
    """What the metadata table keeps of one image file."""

    path: str
    bytes: int
    mtime: float
    sha1: str
    width: int
    height: int


def _to_bgr(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = a.max() if a.size else 1.0
        a = a * (255.0 / (65535.0 if hi > 255 else max(hi, 1.0)))
        return cv2.cvtColor(np.clip(a, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    rgb = np.asarray(im.convert("RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def fit_size(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink so the longer side is at most ``max_side`` (area interpolation; never enlarges)."""
    h, w = pixels.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return pixels
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def decode(data: bytes, max_side: int) -> tuple[np.ndarray, int, int]:
    """Image bytes → (BGR uint8 with the longer side ≤ max_side, full width, full height)."""
    if not data:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise ImageError(f"too large ({width}x{height} pixels, limit {MAX_PIXELS:,})")
                scale = max_side / max(width, height)
                if scale < 1 and im.format == "JPEG":
                    im.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
                im = ImageOps.exif_transpose(im)
                pixels = _to_bgr(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"too large (over {MAX_PIXELS:,} pixels: a decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"cannot decode: {e}") from None
    if pixels.size == 0:
        raise ImageError("image has no pixels")
    # exif_transpose may swap the axes: report the size as displayed.
    if (pixels.shape[1] < pixels.shape[0] and width > height) or (
        pixels.shape[1] > pixels.shape[0] and width < height
    ):
        width, height = height, width
    return fit_size(pixels, max_side), width, height


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_file(path: str | os.PathLike) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file, and its stat. Anything else (a FIFO, a socket, a device, a file
    larger than MAX_FILE_BYTES) is refused without blocking: opening is non-blocking and the read
    is bounded."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError("is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{_kind(st.st_mode)}, not a regular file: skipped")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageError(f"too large for an image ({st.st_size:,} bytes, limit {MAX_FILE_BYTES:,})")
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise ImageError(f"cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"grew past {MAX_FILE_BYTES:,} bytes while being read")
    return data, st


def load(path: str | os.PathLike, max_side: int) -> tuple[np.ndarray, FileInfo]:
    """Read, hash and decode one file; raises ImageError with a short reason."""
    data, st = read_file(path)
    pixels, width, height = decode(data, max_side)
    info = FileInfo(os.fspath(path), len(data), st.st_mtime, hashlib.sha1(data).hexdigest(), width, height)
    return pixels, info


def to_pixels(image: ImageInput, max_side: int) -> np.ndarray:
    """Any accepted image input (path, encoded bytes, or a decoded array) to BGR uint8 at working size.

    Arrays are taken as OpenCV does: 2-D grey, or H×W×3 BGR, or H×W×4 BGRA; uint8, or uint16 scaled down.
    """
    if isinstance(image, np.ndarray):
        a = image
        if a.dtype == np.uint16:
            a = (a >> 8).astype(np.uint8)
        elif a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
                a = a * 255.0
            a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
        if a.ndim == 2:
            a = cv2.cvtColor(a, cv2.COLOR_GRAY2BGR)
        elif a.ndim == 3 and a.shape[2] == 1:
            a = cv2.cvtColor(a[:, :, 0], cv2.COLOR_GRAY2BGR)
        elif a.ndim == 3 and a.shape[2] == 4:
            a = cv2.cvtColor(a, cv2.COLOR_BGRA2BGR)
        elif not (a.ndim == 3 and a.shape[2] == 3):
            raise ImageError(f"array of shape {image.shape} is not an image (want H×W, H×W×3 or H×W×4)")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ImageError("image has no pixels")
        return fit_size(np.ascontiguousarray(a), max_side)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode(bytes(image), max_side)[0]
    return decode(read_file(image)[0], max_side)[0]

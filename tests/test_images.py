import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vecsearch import images as imgs


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; no pixel data (a decompression bomb's first bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo(examples) -> Image.Image:
    return Image.open(next(p for p in examples if "chelsea" in p)).convert("RGB")


def test_decode_limits_longer_side_and_reports_full_size(examples):
    data = Path(examples[0]).read_bytes()
    pixels, w, h = imgs.decode(data, 200)
    assert max(pixels.shape[:2]) == 200 and pixels.dtype == np.uint8 and pixels.shape[2] == 3
    assert (w, h) == Image.open(examples[0]).size


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "I;16"])
def test_decode_modes(photo, mode):
    im = (
        photo.convert(mode)
        if mode != "I;16"
        else Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257)
    )
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    pixels, _, _ = imgs.decode(_encoded(im, fmt), 640)
    assert pixels.shape[2] == 3 and pixels.dtype == np.uint8
    assert 20 < pixels.mean() < 235  # real content, not a black or white page


def test_exif_rotation_is_applied(photo):
    rotated = photo.transpose(Image.Transpose.ROTATE_90)  # stored sideways (90° anticlockwise)...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with "rotate 90° CW to display"
    pixels, w, h = imgs.decode(_encoded(rotated, "JPEG", exif=exif, quality=95), 640)
    upright = cv2.cvtColor(np.asarray(photo), cv2.COLOR_RGB2BGR)
    assert pixels.shape == upright.shape and (w, h) == photo.size
    assert np.abs(pixels.astype(int) - upright).mean() < 8


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello world" * 20, "not a recognised image"),
        (_png_header_only(50_000, 50_000), "too large"),
    ],
)
def test_bad_bytes_raise_image_error(data, reason):
    with pytest.raises(imgs.ImageError, match=reason):
        imgs.decode(data, 640)


def test_truncated_jpeg_is_refused(examples):
    data = Path(examples[0]).read_bytes()
    with pytest.raises(imgs.ImageError):
        imgs.decode(data[:200], 640)


def test_arrays_are_accepted_as_opencv_would_give_them(photo):
    bgr = cv2.cvtColor(np.asarray(photo), cv2.COLOR_RGB2BGR)
    assert imgs.to_pixels(bgr, 640).shape == bgr.shape
    assert imgs.to_pixels(bgr[:, :, 0], 640).shape == bgr.shape
    assert imgs.to_pixels(np.dstack([bgr, bgr[:, :, :1]]), 640).shape == bgr.shape
    with pytest.raises(imgs.ImageError):
        imgs.to_pixels(np.zeros((4, 4, 7), np.uint8), 640)

"""Generate a corpus of hostile image files from one real photo (run: python tests/hostile.py DIR).

Each file is named for what is wrong with it; ``make_corpus`` returns what vecsearch must do with
it: "index" (a valid image, however odd), "skip" (refused with a reason), or "either" (depends on
the machine, e.g. permissions do not stop root).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_claiming(width: int, height: int) -> bytes:
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)  # noqa: E731
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def make_corpus(folder: str | os.PathLike, photo: str | os.PathLike) -> dict[str, str]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.open(photo).convert("RGB")
    jpeg = _save(rgb, "JPEG", quality=90)
    png = _save(rgb, "PNG")
    expect: dict[str, str] = {}

    def put(name: str, data: bytes, what: str) -> None:
        (folder / name).write_bytes(data)
        expect[name] = what

    put("zero-bytes.jpg", b"", "skip")
    put("truncated.jpg", jpeg[: len(jpeg) // 2], "skip")
    put("truncated.png", png[: len(png) // 2], "skip")
    put(
        "random-bytes.jpg",
        np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes(),
        "skip",
    )
    put("text-file.png", b"just some text, not an image\n" * 50, "skip")
    put("bomb-50000x50000.png", _png_claiming(50_000, 50_000), "skip")
    grey16 = np.asarray(rgb.convert("L"), np.uint16) * 257
    put("sixteen-bit.png", _save(Image.fromarray(grey16), "PNG"), "index")
    put("cmyk.jpg", _save(rgb.convert("CMYK"), "JPEG", quality=90), "index")
    put("greyscale.png", _save(rgb.convert("L"), "PNG"), "index")
    put("palette.png", _save(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), "index")
    alpha = rgb.copy()
    alpha.putalpha(Image.linear_gradient("L").resize(rgb.size))
    put("alpha.png", _save(alpha, "PNG"), "index")
    frames = [rgb.rotate(a) for a in (0, 10, 20)]
    put(
        "animated.gif",
        _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "index",
    )
    put("multipage.tiff", _save(frames[0], "TIFF", save_all=True, append_images=frames[1:]), "index")
    put("image.webp", _save(rgb, "WEBP", quality=80), "index")
    put("one-pixel.png", _save(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "index")
    put("strip-10000x10.png", _save(rgb.resize((10_000, 10)), "PNG"), "index")
    put("upright.jpg", jpeg, "index")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90° anticlockwise: viewers rotate it back clockwise
    put(
        "exif-rotated.jpg",
        _save(rgb.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif),
        "index",
    )
    put("name with spaces.jpg", jpeg, "index")
    put("name\nwith newline.jpg", jpeg, "index")
    put('quote\'s "name".jpg', jpeg, "index")
    put("no-permission.jpg", jpeg, "either")
    os.chmod(folder / "no-permission.jpg", 0)
    os.symlink(folder / "does-not-exist.jpg", folder / "dangling-link.jpg")
    expect["dangling-link.jpg"] = "skip"
    (folder / "loop").mkdir()
    os.symlink(folder, folder / "loop" / "back-to-top")  # walking must not follow it forever
    bad_name = os.fsencode(str(folder)) + b"/not-utf8-\xff\xfe.jpg"
    with open(bad_name, "wb") as f:
        f.write(jpeg)
    expect[os.fsdecode(b"not-utf8-\xff\xfe.jpg")] = "index"  # a Linux name is bytes: kept exactly
    os.mkfifo(folder / "fifo.jpg")  # opening it for reading would wait for a writer for ever
    expect["fifo.jpg"] = "skip"
    os.symlink("/dev/zero", folder / "endless.jpg")  # reading it would never end
    expect["endless.jpg"] = "skip"
    return expect


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from vecsearch.encoder import example_images

    out = make_corpus(
        sys.argv[1] if len(sys.argv) > 1 else "hostile", next(p for p in example_images() if "chelsea" in p)
    )
    for name, what in sorted(out.items()):
        print(f"{what:6}  {name!r}")

"""Random edits of the kind copies of a photo go through: crop, viewpoint, rescale, rotation, colour, blur, JPEG.

Calibration fits its percentages on such copies, the tests check that they are found, and the
benchmarks make near-duplicate groups with them.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .encoder import Encoder


def crop(img: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    ch, cw = min(h, max(8, int(h * keep))), min(w, max(8, int(w * keep)))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return img[y : y + ch, x : x + cw]


def rescale(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    size = (max(8, int(w * factor)), max(8, int(h * factor)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def perspective(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Move each corner by up to ``amount`` of the size: the same scene seen from a little aside."""
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-amount, amount, (4, 2)).astype(np.float32) * np.float32([w, h])
    return cv2.warpPerspective(
        img, cv2.getPerspectiveTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT
    )


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def colour_shift(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-8, 9))) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.3), 0, 255)
    hsv = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    alpha, beta = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
    return cv2.convertScaleAbs(hsv, alpha=alpha, beta=beta)


def random_edit(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A copy of ``img`` (BGR uint8) with a random mix of everyday edits; strength 0..1 scales them.

    At full strength the copies reach as far as another shot of the same scene would (crops to
    half, a changed viewpoint, tilt): the calibration was measured best that way (bench/RESULTS.md).
    """
    out = crop(img, 1 - rng.uniform(0.05, 0.5) * strength, rng)
    if rng.random() < 0.7:
        out = perspective(out, rng.uniform(0.03, 0.15) * strength, rng)
    out = rescale(out, rng.uniform(0.5, 1.2))
    if rng.random() < 0.5:
        out = rotate(out, rng.uniform(-20, 20) * strength)
    if rng.random() < 0.6:
        out = colour_shift(out, rng)
    if rng.random() < 0.2:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.1:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < 0.1:
        out = np.ascontiguousarray(out[:, ::-1])
    return jpeg(out, int(rng.integers(35, 95)))


def edited_copies(pixels: np.ndarray, path: str, copies: int, seed: int) -> list[np.ndarray]:
    """``copies`` random edits of a file's decoded pixels; they depend only on its path and ``seed``,
    not on which worker, batch or stage makes them."""
    rng = np.random.default_rng([seed, zlib.crc32(path.encode("utf-8", "surrogateescape"))])
    return [random_edit(pixels, rng) for _ in range(copies)]


@dataclass(frozen=True)
class CopyPlan:
    """Which files of a build are calibration sources (about ``rate`` of them), with how many edited
    copies each. A build makes the copies while it has the pixels decoded anyway; the choice hangs
    on a hash of the path, so it is the same whatever the batches, workers or restarts."""

    rate: float
    copies: int
    seed: int = 0

    def wants(self, path: str) -> bool:
        if self.rate >= 1:
            return True
        h = hashlib.blake2b(
            path.encode("utf-8", "surrogateescape"), digest_size=8, key=self.seed.to_bytes(8, "little")
        )
        return int.from_bytes(h.digest(), "little") < self.rate * 2**64


def encode_copies(encoder: Encoder, paths: list[str], copies: int, seed: int) -> list[np.ndarray | None]:
    """Vectors of ``copies`` random edits of each file, (copies, dim) each, None where it cannot be read.

    Calibration's positives for sources the build did not make copies of (vectors made elsewhere,
    or a refit), on the build's executor, where the files are.
    """
    from .images import ImageError, load

    edited: list[np.ndarray] = []
    read: list[bool] = []
    for path in paths:
        try:
            pixels = load(path, encoder.config.max_side)[0]
        except ImageError:
            read.append(False)
            continue
        edited += edited_copies(pixels, path, copies, seed)
        read.append(True)
    vectors = iter(
        np.split(encoder.encode(edited), np.arange(copies, len(edited), copies))
    )  # one batch: the PCA is matrix-shaped
    return [next(vectors) if ok else None for ok in read]

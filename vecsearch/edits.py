"""Random edits of the kind copies of a photo go through: crop, viewpoint, rescale, rotation,
colour, blur, JPEG.

Calibration fits its percentages on such copies, the tests check that they are found, and the
benchmarks make near-duplicate groups with them.
"""

from __future__ import annotations

import cv2
import numpy as np


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
    _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
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

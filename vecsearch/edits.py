"""Random edits of the kind copies of a photo go through: crop, viewpoint, rescale, rotation,
colour, blur, JPEG, mirror, greyscale, borders, an overlaid text or logo.

``copy_edit`` makes the copies calibration fits its percentages on: one edit of a random kind, and
sometimes a milder second one, as copies found in the wild are (and as the shared copy-detection
set was made). ``random_edit`` mixes many edits at once, harsher than a copy: the benchmarks make
near-duplicate groups with it.
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


def grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def colour_change(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast, gamma and saturation moved by up to ``strength`` of their range."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * (1 + rng.uniform(-0.6, 0.6) * strength), 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32) / 255
    out = out ** (1 + rng.uniform(-0.5, 0.8) * strength)
    out = (out - 0.5) * (1 + rng.uniform(-0.4, 0.4) * strength) + 0.5 + rng.uniform(-0.2, 0.2) * strength
    return np.clip(out * 255, 0, 255).astype(np.uint8)


def overlay(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A caption or a logo-like block stamped on the picture."""
    out = img.copy()
    h, w = out.shape[:2]
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    if rng.random() < 0.5:
        scale = max(0.4, w / 400) * rng.uniform(0.8, 1.6)
        y = int(rng.uniform(0.2, 0.95) * h)
        cv2.putText(
            out,
            "© vecsearch 2026",
            (int(rng.uniform(0, 0.3) * w), y),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            colour,
            max(1, int(2 * scale)),
            cv2.LINE_AA,
        )
    else:
        bw, bh = int(w * rng.uniform(0.1, 0.25)), int(h * rng.uniform(0.1, 0.25))
        x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        cv2.rectangle(out, (x, y), (x + bw, y + bh), colour, -1)
    return out


def pad(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Borders of one colour on two or four sides, up to 20% of the size at full strength."""
    h, w = img.shape[:2]
    t, b, left, right = (int(x) for x in rng.uniform(0, 0.2 * strength, 4) * [h, h, w, w])
    if rng.random() < 0.5:
        t = b = 0
    colour = [int(c) for c in rng.integers(0, 256, 3)]
    return cv2.copyMakeBorder(img, t, b, left, right, cv2.BORDER_CONSTANT, value=colour)


def tilt(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A rotation by 5–20° (scaled by strength), its corners black, coloured or cropped away."""
    h, w = img.shape[:2]
    degrees = rng.uniform(5, 5 + 15 * strength) * rng.choice([-1, 1])
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    colour = [int(c) for c in (rng.integers(0, 256, 3) if rng.random() < 0.5 else (0, 0, 0))]
    out = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=colour)
    if rng.random() < 0.3:  # cropped inside the rotated frame
        a = np.radians(abs(degrees))
        keep = 1 / (np.cos(a) + np.sin(a) * max(h, w) / min(h, w))
        out = crop(out, keep, np.random.default_rng(0))
    return out


def _one_edit(img: np.ndarray, kind: str, rng: np.random.Generator, strength: float) -> np.ndarray:
    if kind == "crop":
        return crop(img, np.sqrt(1 - rng.uniform(0.1, 0.5) * strength), rng)  # 50–90% of the area
    if kind == "rescale":
        return rescale(img, 1 - rng.uniform(0.2, 0.7) * strength)
    if kind == "jpeg":
        return jpeg(img, int(100 - rng.uniform(50, 90) * strength))
    if kind == "rotate":
        return tilt(img, rng, strength)
    if kind == "mirror":
        return np.ascontiguousarray(img[:, ::-1])
    if kind == "colour":
        return colour_change(img, rng, strength)
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), 0.3 + rng.uniform(0.2, 2.0) * strength)
    if kind == "overlay":
        return overlay(img, rng)
    if kind == "pad":
        return pad(img, rng, strength)
    if kind == "grey":
        return grey(img)
    return perspective(img, rng.uniform(0.03, 0.1) * strength, rng)


COPY_EDITS = (
    "crop",
    "rescale",
    "jpeg",
    "rotate",
    "mirror",
    "colour",
    "blur",
    "overlay",
    "pad",
    "grey",
    "perspective",
)


def copy_edit(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``img`` as copies are made: one edit of a random kind and, four times in ten, a
    milder one of another kind; saved as a JPEG."""
    kinds = rng.choice(len(COPY_EDITS), 2, replace=False)
    out = _one_edit(img, COPY_EDITS[kinds[0]], rng, 1.0)
    if rng.random() < 0.4:
        out = _one_edit(out, COPY_EDITS[kinds[1]], rng, 0.5)
    return jpeg(out, int(rng.integers(75, 96)))

"""HSV colour histograms plus a little texture, computed on a small copy of the image (≤160 px).

Each histogram sums to one and is square-rooted (Hellinger). Parts: a global HSV histogram; a
``grid``×``grid`` layout of HSV histograms; uniform-LBP histograms on a 2×2 grid; edge-direction
histograms (8 orientations weighted by gradient magnitude + a flat bin) on a 3×3 grid. Each part has
unit L2 norm before its weight.
"""

from __future__ import annotations

import cv2
import numpy as np

SIDE = 160  # colour and texture are computed on a copy at most this large (half the encoder's 320)
#: An image is colourless when fewer than GREY_SHARE of its pixels have channels more than
#: GREY_SPREAD levels apart: a greyscale photo, even after JPEG put some chroma noise in it.
GREY_SPREAD = 12
GREY_SHARE = 0.005


def _norm_sqrt(h: np.ndarray) -> np.ndarray:
    h = np.asarray(h, np.float32).ravel()
    s = h.sum()
    return np.sqrt(h / s) if s > 0 else h


def _cells(h: int, w: int, g: int):
    ys = np.linspace(0, h, g + 1).round().astype(int)
    xs = np.linspace(0, w, g + 1).round().astype(int)
    return [
        (slice(ys[i], max(ys[i + 1], ys[i] + 1)), slice(xs[j], max(xs[j + 1], xs[j] + 1)))
        for i in range(g)
        for j in range(g)
    ]


def _grid(g: int, fn, *planes: np.ndarray) -> np.ndarray:
    """fn's histogram of each cell of a g×g grid over the planes (same shape), √-normalised, / g."""
    h, w = planes[0].shape[:2]
    parts = [_norm_sqrt(fn(*(np.ascontiguousarray(p[sy, sx]) for p in planes))) for sy, sx in _cells(h, w, g)]
    return np.concatenate(parts) / np.float32(g)


def _hsv_hist(hsv: np.ndarray, bins) -> np.ndarray:
    return cv2.calcHist([hsv], [0, 1, 2], None, list(bins), [0, 180, 0, 256, 0, 256]).ravel()


def _uniform_lut() -> np.ndarray:
    lut = np.full(256, 58, np.uint8)
    k = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            lut[code] = k
            k += 1
    return lut


_LBP_LUT = _uniform_lut()
_LBP_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]


def _lbp(grey: np.ndarray) -> np.ndarray:
    """Uniform 8-neighbour LBP codes 0..58 of the interior pixels."""
    h, w = grey.shape
    c = grey[1:-1, 1:-1]
    code = np.zeros(c.shape, np.uint8)
    if code.size == 0:  # OpenCV crashes on empty arrays
        return code
    for bit, (dy, dx) in enumerate(_LBP_OFFSETS):
        # cv2.compare (255 or 0) is 3x faster than numpy's >=; numpy does the rest, because
        # OpenCV would take a 1×1 array for a scalar.
        code |= cv2.compare(grey[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx], c, cv2.CMP_GE) & np.uint8(
            1 << bit
        )
    return _LBP_LUT[code]


def _edge_hist(grey: np.ndarray, g: int, flat: float = 20.0) -> np.ndarray:
    f = grey.astype(np.float32)
    mag, ang = cv2.cartToPolar(
        cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    )
    b = (ang * np.float32(8 / np.pi)).astype(np.uint8) & np.uint8(
        7
    )  # unsigned orientation, 22.5° bins (ang ≥ 0)
    b = np.where(mag < flat, np.uint8(8), b)
    np.maximum(mag, np.float32(flat), out=mag)  # flat pixels count as much as the weakest edge
    return _grid(g, lambda bins, weights: np.bincount(bins.ravel(), weights.ravel(), minlength=9), b, mag)


def colourless(bgr: np.ndarray) -> bool:
    """Whether the image has no colour to compare (see GREY_SHARE)."""
    b, g, r = cv2.split(bgr)
    spread = cv2.subtract(cv2.max(cv2.max(b, g), r), cv2.min(cv2.min(b, g), r))
    return int(np.count_nonzero(spread > GREY_SPREAD)) < GREY_SHARE * spread.size


def colour_histogram(
    bgr: np.ndarray,
    bins: tuple[int, int, int] = (16, 4, 4),
    grid: int = 2,
    grid_bins: tuple[int, int, int] = (8, 3, 3),
    grid_weight: float = 0.7,
    texture_weight: float = 0.7,
    side: int = SIDE,
) -> np.ndarray:
    """Global HSV + grid HSV + LBP (2×2) + edge directions (3×3) of a copy at most ``side`` px;
    float32, √-normalised parts."""
    h, w = bgr.shape[:2]
    scale = side / max(h, w)
    if scale < 1:
        bgr = cv2.resize(
            bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    parts = [_norm_sqrt(_hsv_hist(hsv, bins))]
    if grid > 1:
        parts.append(grid_weight * _grid(grid, lambda c: _hsv_hist(c, grid_bins), hsv))
    if texture_weight > 0:
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        parts.append(texture_weight * _grid(2, lambda c: np.bincount(c.ravel(), minlength=59), _lbp(grey)))
        parts.append(texture_weight * _edge_hist(grey, 3))
    return np.concatenate(parts).astype(np.float32)

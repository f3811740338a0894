"""HSV colour histograms: one global, plus one per cell of a coarse grid for layout.

Each histogram sums to one and the whole vector is square-rooted (Hellinger), which turns L2 distance
into a distance that matches how people compare colour distributions far better than raw counts.
"""
from __future__ import annotations

import cv2
import numpy as np


def _hist(hsv: np.ndarray, bins: tuple[int, int, int]) -> np.ndarray:
    h = cv2.calcHist([hsv], [0, 1, 2], None, list(bins), [0, 180, 0, 256, 0, 256]).ravel()
    total = h.sum()
    return h / total if total > 0 else h


def colour_histogram(
    bgr: np.ndarray,
    bins: tuple[int, int, int] = (8, 12, 3),
    grid: int = 2,
    grid_bins: tuple[int, int, int] = (8, 3, 3),
    grid_weight: float = 1.0,
) -> np.ndarray:
    """Global HSV histogram followed by a ``grid``×``grid`` spatial one; float32, √-normalised.

    The global and the spatial parts are each given unit L2 norm, then ``grid_weight`` scales the
    spatial part, so the balance does not depend on the number of bins.
    """
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    parts = [np.sqrt(_hist(hsv, bins))]
    if grid > 1:
        h, w = hsv.shape[:2]
        ys = np.linspace(0, h, grid + 1).round().astype(int)
        xs = np.linspace(0, w, grid + 1).round().astype(int)
        cells = [
            _hist(np.ascontiguousarray(hsv[ys[i] : max(ys[i + 1], ys[i] + 1), xs[j] : max(xs[j + 1], xs[j] + 1)]), grid_bins)
            for i in range(grid)
            for j in range(grid)
        ]
        spatial = np.sqrt(np.concatenate(cells)) / np.sqrt(grid * grid)
        parts.append(grid_weight * spatial)
    return np.concatenate(parts).astype(np.float32)

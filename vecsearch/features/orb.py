"""ORB keypoint descriptors: fast binary local features that survive crops, rescaling and JPEG."""

from __future__ import annotations

import cv2
import numpy as np

MIN_SIDE = 32


def orb_descriptors(bgr: np.ndarray, n_features: int = 1000) -> np.ndarray:
    """(m, 32) uint8 ORB descriptors of the image, m ≤ n_features (0 rows for a blank image)."""
    if min(bgr.shape[:2]) < MIN_SIDE:  # ORB's pyramid would shrink it to nothing
        return np.zeros((0, 32), np.uint8)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    orb = cv2.ORB_create(nfeatures=n_features)
    _, desc = orb.detectAndCompute(grey, None)
    if desc is None:
        return np.zeros((0, 32), np.uint8)
    return desc

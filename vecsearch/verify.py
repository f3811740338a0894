"""Geometric verification: whether a query and a candidate show the same picture, by their keypoints.

ORB keypoints of both (at the encoder's working size) are matched by Hamming distance with Lowe's
ratio test, and a RANSAC homography is fitted to the matches; its inliers are the evidence. A
candidate with at least ``MIN_INLIERS`` is verified (pairs of unrelated photos get 4–11 by chance,
and with 12 or 15 too many other views of an object passed on UKBench). A candidate found through
the query's mirror image is matched with the mirror's keypoints. ``rerank`` moves the verified
candidates among the top ``DEPTH`` ahead of the others; each keep their order. It needs the
indexed files at query time: a candidate whose file cannot be read keeps its place and says it was
not verified.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from .features.orb import MIN_SIDE

MIN_INLIERS = 20
DEPTH = 20  # candidates verified per query
RATIO = 0.8  # Lowe's ratio test
RANSAC_PIXELS = 5.0  # reprojection error of an inlier, at the working size (≤ 320 px)
RANSAC_ITERATIONS = 500
N_FEATURES = 1000


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray  # (n, 2) float32, pixel coordinates
    descriptors: np.ndarray  # (n, 32) uint8


NONE = Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))


def keypoints(pixels: np.ndarray, n_features: int | None = None) -> Keypoints:
    """ORB keypoints and descriptors of a BGR (or grey) image (N_FEATURES of them by default)."""
    if min(pixels.shape[:2]) < MIN_SIDE:
        return NONE
    grey = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY) if pixels.ndim == 3 else pixels
    points, desc = cv2.ORB_create(nfeatures=n_features or N_FEATURES).detectAndCompute(grey, None)
    if desc is None or len(points) < 4:
        return NONE
    return Keypoints(np.float32([p.pt for p in points]), desc)


def inliers(a: Keypoints, b: Keypoints) -> int:
    """RANSAC homography inliers among the ratio-tested matches of a to b (0 if too few)."""
    if len(a.descriptors) < 4 or len(b.descriptors) < 4:
        return 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_INLIERS:  # cannot be verified: no need to know how few would be inliers
        return len(good) if len(good) < 4 else min(len(good), MIN_INLIERS - 1)
    src = a.points[[m.queryIdx for m in good]]
    dst = b.points[[m.trainIdx for m in good]]
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PIXELS, maxIters=RANSAC_ITERATIONS)
    return int(mask.sum()) if mask is not None else 0


@dataclass(frozen=True)
class QueryKeypoints:
    straight: Keypoints
    mirrored: Keypoints

    @classmethod
    def of(cls, pixels: np.ndarray) -> QueryKeypoints:
        return cls(keypoints(pixels), keypoints(np.ascontiguousarray(pixels[:, ::-1])))

    def inliers(self, candidate: Keypoints, mirrored: bool) -> int:
        """Inliers with the candidate: of the query, or of its mirror image when the candidate was
        found through it."""
        return inliers(self.mirrored if mirrored else self.straight, candidate)


def evidence(
    query: QueryKeypoints,
    candidates: Sequence[tuple[str, bool]],
    load: Callable[[str], np.ndarray],
    workers: int = 2,
) -> list[int | None]:
    """Inliers of each candidate (path, found through the mirror) with the query; None where the
    file cannot be read. Threads: OpenCV and the decoder release the GIL."""

    def one(candidate: tuple[str, bool]) -> int | None:
        path, mirrored = candidate
        try:
            return query.inliers(keypoints(load(path)), mirrored)
        except (OSError, ValueError):  # ImageError is a ValueError
            return None

    if len(candidates) < 4 or workers <= 1:
        return [one(c) for c in candidates]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, candidates))


#: How much more often a candidate passes verification when it is a copy than when it is not: the
#: likelihood ratios of passing and of failing, measured on the shared copy-detection set's top-10
#: hits (bench/TUNING.md); a checked hit's percentage is the vector's, moved by them.
PASSED_RATIO = 18.0
FAILED_RATIO = 0.016


def adjusted(percent: float, found: int | None) -> float:
    """A hit's percentage with its verification's evidence: unchanged when it was not checked."""
    if found is None:
        return percent
    p = min(max(percent / 100.0, 1e-4), 1 - 1e-4)
    odds = p / (1 - p) * (PASSED_RATIO if found >= MIN_INLIERS else FAILED_RATIO)
    return 100.0 * odds / (1 + odds)


def rerank(found: Sequence[int | None], min_inliers: int = MIN_INLIERS) -> list[int]:
    """The new order of candidates (best first) whose inliers are ``found``: the verified ones (at
    least min_inliers) first, then the others, each in their order (sorting the verified ones by
    inliers cost UKBench N-S 0.01–0.03: bench/TUNING.md)."""
    verified = [i for i, n in enumerate(found) if n is not None and n >= min_inliers]
    chosen = set(verified)
    return verified + [i for i in range(len(found)) if i not in chosen]

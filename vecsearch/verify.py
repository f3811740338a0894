"""Geometric verification: whether a query and a candidate show the same picture, by their keypoints.

ORB keypoints of both (at the encoder's working size) are matched by Hamming distance with Lowe's
ratio test, and a homography is fitted to the matches (OpenCV's ``USAC_ACCURATE``: MSAC's scoring
and graph-cut local optimisation, which place it more closely than plain RANSAC); its inliers
decide whether the pair is verified. A candidate with at least ``MIN_INLIERS`` is (pairs of
unrelated photos get 4–11 by chance, and with 12 or 15 too many other views of an object passed on
UKBench). A homography that folds or flattens the picture where its inliers are is no view of it,
and verifies nothing. A candidate found through the query's mirror image is matched with the
mirror's keypoints.

Another shot of the same scene or object passes as easily as a copy: its keypoints on the object
fit one homography too. What tells them apart is the rest of the picture. Aligned by that
homography, a copy agrees with its source nearly everywhere (the same background, light and
moment), another shot only where the object is (``agreement``: the median, over blocks of the
overlap, of the grey levels' correlation). And a copy made by editing fits that homography as
closely as keypoints can be placed, while another shot departs from it by parallax and motion
(``residual``). A verified hit's percentage comes from both, a checked one that fails is moved
down from the vector's (``adjusted``). ``rerank`` moves the verified candidates among the top
``DEPTH`` ahead of the others; each keep their order. It needs the indexed files at query time: a
candidate whose file cannot be read keeps its place and says it was not verified.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from .features.orb import MIN_SIDE

MIN_INLIERS = 20
DEPTH = 20  # candidates verified per query
RATIO = 0.8  # Lowe's ratio test
INLIER_PIXELS = 5.0  # an inlier's reprojection error, in the larger picture's pixels (working size)
ITERATIONS = 500  # of the homography's robust fit
MAX_ANISOTROPY = 4.0  # of the homography's Jacobian at its inliers: more flattens the picture
N_FEATURES = 1000


BLOCKS = 6  # the overlap is cut into BLOCKS x BLOCKS blocks for the agreement
MIN_BLOCKS = 4  # blocks inside the overlap needed for an agreement
CLIPPED = 2  # grey levels this near 0 or 255 are left out of the agreement
FLAT = 2.0  # grey levels: a standard deviation under it is a flat fill
BLUR = 2.0  # sigma, in working-size pixels, before the grey levels are compared
MAX_STRETCH = 4.0  # the finer picture is blurred to the other's grain, as if at most this much finer
COVER_MARGIN = 0.05  # of the target: eroding the warped border costs a thumbnail a few hundredths


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray  # (n, 2) float32, pixel coordinates
    descriptors: np.ndarray  # (n, 32) uint8
    scales: np.ndarray  # (n,) float32: of the pyramid level each was found at, 1 at full size
    grey: np.ndarray | None = None  # the grey image they were found in (for the agreement)


NONE = Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), np.zeros(0, np.float32))


@dataclass(frozen=True)
class Check:
    """What verification found for one candidate."""

    inliers: int
    agreement: float | None = None  # aligned pictures, -1..1; None: not verified or too little to compare
    residual: float | None = None  # of the inliers from the homography, in keypoint scales (verified only)

    @property
    def verified(self) -> bool:
        return self.inliers >= MIN_INLIERS


def keypoints(pixels: np.ndarray, n_features: int | None = None) -> Keypoints:
    """ORB keypoints and descriptors of a BGR (or grey) image (N_FEATURES of them by default)."""
    if min(pixels.shape[:2]) < MIN_SIDE:
        return NONE
    grey = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY) if pixels.ndim == 3 else pixels
    orb = cv2.ORB_create(nfeatures=n_features or N_FEATURES)
    points, desc = orb.detectAndCompute(grey, None)
    if desc is None or len(points) < 4:
        return NONE
    scales = np.float32(orb.getScaleFactor()) ** np.float32([p.octave for p in points])
    return Keypoints(np.float32([p.pt for p in points]), desc, scales, grey)


def match(a: Keypoints, b: Keypoints) -> Check:
    """The homography's inliers among the ratio-tested matches of a to b (0 if too few, or if it is no
    view's: ``plausible``) and, where they verify the pair, the agreement of the two pictures
    aligned by that homography and the inliers' residual. The homography maps onto the picture of
    more pixels: the inliers' tolerance is in its target's pixels, which a thumbnail's would loosen."""
    if len(a.descriptors) < 4 or len(b.descriptors) < 4:
        return Check(0)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_INLIERS:  # cannot be verified: no need to know how few would be inliers
        return Check(len(good) if len(good) < 4 else min(len(good), MIN_INLIERS - 1))
    ia, ib = np.intp([m.queryIdx for m in good]), np.intp([m.trainIdx for m in good])
    larger_a = a.grey is not None and b.grey is not None and a.grey.size > b.grey.size
    (source, i), (target, j) = ((b, ib), (a, ia)) if larger_a else ((a, ia), (b, ib))
    src, dst = source.points[i], target.points[j]
    h, mask = cv2.findHomography(src, dst, cv2.USAC_ACCURATE, INLIER_PIXELS, maxIters=ITERATIONS)
    inlier = mask.ravel() > 0 if mask is not None else np.zeros(len(good), bool)
    found = int(inlier.sum()) if plausible(h, src[inlier]) else 0
    if found < MIN_INLIERS or a.grey is None or b.grey is None:
        return Check(found)
    found_residual = residual(src[inlier], dst[inlier], h, source.scales[i[inlier]], target.scales[j[inlier]])
    return Check(found, agreement(source, target, h), found_residual)


def plausible(h: np.ndarray | None, points: np.ndarray) -> bool:
    """Whether the homography ``h`` can be a view of the picture where its inliers ``points`` are:
    its Jacobian at their centre neither folds it (a mirror image is matched as such) nor squeezes
    one direction MAX_ANISOTROPY times more than the other. A degenerate fit (a few matches in a
    cluster, the picture collapsed onto a line) can gather MIN_INLIERS and verify nothing."""
    if h is None or len(points) < 4:
        return False
    centre = np.r_[points.mean(axis=0), 1.0]
    w = float(h[2] @ centre)
    if abs(w) < 1e-9:
        return False
    jacobian = (h[:2, :2] - np.outer(h[:2] @ centre / w, h[2, :2])) / w
    singular = np.linalg.svd(jacobian, compute_uv=False)
    return bool(np.linalg.det(jacobian) > 0 and singular[0] <= MAX_ANISOTROPY * singular[1])


def stretch(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """How many pixels of the target one pixel at each of ``points`` becomes under the homography
    ``h``: the square root of its Jacobian's determinant, det(h) / w³."""
    w = points @ h[2, :2] + h[2, 2]
    return np.sqrt(np.abs(np.linalg.det(h)) / np.maximum(np.abs(w), 1e-9) ** 3)


def residual(
    src: np.ndarray, dst: np.ndarray, h: np.ndarray, src_scales: np.ndarray, dst_scales: np.ndarray
) -> float:
    """The median distance of the matched points ``dst`` from ``src`` moved by ``h``, each in units
    of the grain at which ORB places its two keypoints (their pyramid scales, the source's as ``h``
    stretches it, so that a thumbnail's coarser grain is not taken for a stray): an edited copy is
    mapped exactly by one homography, so only that grain is left; another shot is not."""
    moved = cv2.perspectiveTransform(src.reshape(1, -1, 2), h).reshape(-1, 2)
    grain = np.sqrt(((stretch(h, src) * src_scales) ** 2 + dst_scales**2) / 2)
    return float(np.median(np.linalg.norm(moved - dst, axis=1) / grain))


def agreement(a: Keypoints, b: Keypoints, a_to_b: np.ndarray) -> float | None:
    """How alike two pictures' grey levels are once aligned: the finer of the two is blurred to the
    other's grain and warped onto it (or the coarser onto the finer, where that covers COVER_MARGIN
    more of its target, as a photo covers its crop: a thumbnail stretched onto its photo disagrees
    along its border), and the median over the blocks of the overlap of their correlation is taken.
    A median, so that a stamp, a border or a blurred corner does not count against a copy. A block
    counts where half of it is overlap that is neither flat nor clipped; None where fewer than
    MIN_BLOCKS do (too little to compare)."""
    try:
        b_to_a = np.linalg.inv(a_to_b)
    except np.linalg.LinAlgError:
        return None
    centre = np.float64([[a.grey.shape[1] / 2, a.grey.shape[0] / 2]])
    s = float(np.clip(stretch(a_to_b, centre)[0], 1 / MAX_STRETCH, MAX_STRETCH))  # a's pixel in b's pixels
    a, b = _comparable(a.grey, BLUR * max(1.0, 1.0 / s)), _comparable(b.grey, BLUR * max(1.0, s))
    onto_a, onto_b = _aligned(b, a, b_to_a), _aligned(a, b, a_to_b)
    onto_coarser, onto_finer = (onto_a, onto_b) if s >= 1.0 else (onto_b, onto_a)
    covers_more = onto_finer[2].mean() > onto_coarser[2].mean() + COVER_MARGIN
    return _block_median(*(onto_finer if covers_more else onto_coarser))


def _comparable(grey: np.ndarray, blur: float) -> tuple[np.ndarray, np.ndarray]:
    """The grey levels blurred by ``blur``, and where they are usable (uint8): not clipped, nor next
    to clipped ones, which a strong tone edit crushes."""
    clipped = ((grey <= CLIPPED) | (grey >= 255 - CLIPPED)).astype(np.uint8)
    usable = 1 - cv2.dilate(clipped, np.ones((7, 7), np.uint8))
    return cv2.GaussianBlur(grey, (0, 0), blur).astype(np.float32), usable


def _aligned(moving: tuple, fixed: tuple, h: np.ndarray) -> tuple[np.ndarray, ...]:
    (grey, usable), (target, target_usable) = moving, fixed
    size = (target.shape[1], target.shape[0])
    warped = cv2.warpPerspective(grey, h, size)
    cover = cv2.warpPerspective(usable, h, size, flags=cv2.INTER_NEAREST)
    inside = cv2.erode(cover, np.ones((5, 5), np.uint8)) > 0  # off the warped border's blur
    return warped, target, inside & (target_usable > 0)


def _block_median(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float | None:
    inside = inside & _textured(a) & _textured(b)  # a flat fill (padding, rotation corners) says nothing
    rows, cols = ([i * n // BLOCKS for i in range(BLOCKS + 1)] for n in inside.shape)
    found = []
    for i in range(BLOCKS):
        for j in range(BLOCKS):
            block = slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1])
            m = inside[block]
            if m.mean() < 0.5:
                continue
            x, y = a[block][m], b[block][m]
            x, y = x - x.mean(), y - y.mean()
            norm = float(np.sqrt(np.dot(x, x) * np.dot(y, y)))
            if norm > 1e-6:
                found.append(float(np.dot(x, y)) / norm)
    return float(np.median(found)) if len(found) >= MIN_BLOCKS else None


def _textured(grey: np.ndarray) -> np.ndarray:
    """Where the grey levels vary by more than FLAT around a pixel (7 x 7)."""
    mean = cv2.blur(grey, (7, 7))
    var = cv2.blur(grey * grey, (7, 7)) - mean * mean
    return var > FLAT**2


class QueryKeypoints:
    """A query's keypoints, and its mirror image's, found when a candidate first needs them (most
    candidates are found straight, and a duplicate group's always are)."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels

    @functools.cached_property
    def straight(self) -> Keypoints:
        return keypoints(self.pixels)

    @functools.cached_property
    def mirrored(self) -> Keypoints:
        return keypoints(np.ascontiguousarray(self.pixels[:, ::-1]))

    def match(self, candidate: Keypoints, mirrored: bool) -> Check:
        """The check against the candidate: of the query, or of its mirror image when the candidate
        was found through it."""
        return match(self.mirrored if mirrored else self.straight, candidate)


def evidence(
    query: QueryKeypoints,
    candidates: Sequence[tuple[str, bool]],
    load: Callable[[str], np.ndarray],
    workers: int = 2,
) -> list[Check | None]:
    """The check of each candidate (path, found through the mirror) against the query; None where
    the file cannot be read. Threads: OpenCV and the decoder release the GIL."""

    def one(candidate: tuple[str, bool]) -> Check | None:
        path, mirrored = candidate
        try:
            return query.match(keypoints(load(path)), mirrored)
        except (OSError, ValueError):  # ImageError is a ValueError
            return None

    for side in {mirrored for _, mirrored in candidates}:  # found here, not by two threads at once
        _ = query.mirrored if side else query.straight
    if len(candidates) < 4 or workers <= 1:
        return [one(c) for c in candidates]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, candidates))


#: A checked hit that fails verification: its log-odds are FAILED_WEIGHT * the vector's log-odds +
#: FAILED_BIAS (a failed check says the vector's evidence was less than it seemed: a fitted weight
#: under 1), a logistic fit on the checked hits of the agreement's fit, below. One that verifies
#: with too little overlap to compare the pictures has the vector's odds times PASSED_RATIO, how much
#: more often a copy passes than another picture does, measured on the shared copy-detection set's
#: top-10 hits (bench/TUNING.md: a share fitted as for the others read different objects high).
FAILED_WEIGHT = 0.492
FAILED_BIAS = -3.564
PASSED_RATIO = 18.0
#: A verified hit whose agreement is known: its log-odds are AGREEMENT_WEIGHT * atanh(agreement) +
#: RESIDUAL_WEIGHT * residual + BIAS, the agreement clipped to AGREEMENT_CLIP (the clip of least
#: held-out log loss); a logistic fit on the verified pairs of the copy set and of UKBench and
#: Holidays scenes the copy set did not take, where copies and other shots of a scene both verify and
#: the vector cannot tell them apart (beside the two its fitted weight is nil), so it is left out
#: (``python -m bench.tune_agreement``, bench/TUNING.md).
AGREEMENT_WEIGHT = 2.818
RESIDUAL_WEIGHT = -3.581
BIAS = -3.213
AGREEMENT_CLIP = 0.997


def adjusted(percent: float, check: Check | None) -> float:
    """A hit's percentage with its verification's evidence: unchanged when it was not checked."""
    if check is None:
        return percent
    if not check.verified:
        log_odds = FAILED_WEIGHT * vector_log_odds(percent) + FAILED_BIAS
    elif check.agreement is None:
        log_odds = vector_log_odds(percent) + np.log(PASSED_RATIO)
    else:
        log_odds = verified_log_odds(check.agreement, check.residual)
    return float(100.0 / (1.0 + np.exp(-log_odds)))


def vector_log_odds(percent: float | np.ndarray) -> float | np.ndarray:
    """The log-odds of the vector's percentage (kept off 0 and 100)."""
    p = np.clip(np.asarray(percent) / 100.0, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def verified_log_odds(agreement: float | np.ndarray, residual: float | np.ndarray) -> float | np.ndarray:
    """Log-odds that a verified pair of this agreement and residual is a copy, where copies are as
    large a share of the verified pairs as in the fit's (0.828: bench/TUNING.md)."""
    z = np.arctanh(np.clip(agreement, -AGREEMENT_CLIP, AGREEMENT_CLIP))
    return AGREEMENT_WEIGHT * z + RESIDUAL_WEIGHT * residual + BIAS


def rerank(found: Sequence[Check | None]) -> list[int]:
    """The new order of candidates (best first) whose checks are ``found``: the verified ones first,
    then the others, each in their order (sorting the verified ones by inliers cost UKBench N-S
    0.01–0.03: bench/TUNING.md)."""
    verified = [i for i, c in enumerate(found) if c is not None and c.verified]
    chosen = set(verified)
    return verified + [i for i in range(len(found)) if i not in chosen]

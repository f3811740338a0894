"""Geometric verification on real photos (the examples vecsearch ships): a copy verifies and agrees
with its photo once aligned, whatever the edit, and its keypoints fit the alignment; another photo
does not agree, a picture bent off one homography strays from it; a verified hit's percentage
follows both."""

import cv2
import numpy as np
import pytest

from vecsearch import verify
from vecsearch.edits import colour_change, jpeg, overlay, pad, tilt
from vecsearch.images import fit_size

SIDE = 320  # the encoder's working size

EDITS = {
    "tilted, its corners filled": lambda img, rng: tilt(img, rng, 1.0),
    "padded": lambda img, rng: pad(img, rng, 1.0),
    "stamped": lambda img, rng: overlay(img, rng),
    "recoloured": lambda img, rng: colour_change(img, rng, 1.0),
    "JPEG 30": lambda img, rng: jpeg(img, 30),
}


def working(img: np.ndarray) -> np.ndarray:
    return fit_size(img, SIDE)


@pytest.fixture(scope="module")
def photos(examples):
    textured = [cv2.imread(p) for p in examples]
    return [img for img in textured if len(verify.keypoints(working(img)).points) >= 500][:4]


@pytest.mark.parametrize("kind", EDITS)
def test_a_copy_verifies_and_agrees_with_its_photo(photos, kind):
    """At 70% or more even where the vector said 40%; where too much is crushed to black or white
    to compare (a strong tone edit), the check has no agreement and says so."""
    rng = np.random.default_rng(0)
    compared = 0
    for img in photos:
        copy = EDITS[kind](img, rng)
        check = verify.match(verify.keypoints(working(copy)), verify.keypoints(working(img)))
        assert check.verified, (kind, check)
        assert check.agreement is None or check.agreement > 0.95, (kind, check)
        assert check.residual < 0.8, (kind, check)  # resampling's grain at most
        assert verify.adjusted(40.0, check) >= 70.0, (kind, check)
        compared += check.agreement is not None
    assert compared >= len(photos) - 1


@pytest.mark.parametrize("query", ["the thumbnail", "the photo"])
def test_a_thumbnail_verifies_and_agrees_with_its_photo_either_way(photos, query):
    """Half the photo's working size: its keypoints sit on a coarser grain and its pixels are
    blurrier, and neither may count against it, whichever of the two is the query."""
    for img in photos:
        photo = working(img)
        thumbnail = cv2.resize(photo, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        pair = (thumbnail, photo) if query == "the thumbnail" else (photo, thumbnail)
        check = verify.match(*(verify.keypoints(x) for x in pair))
        assert check.verified and check.agreement > 0.95 and check.residual < 0.8, check
        assert verify.adjusted(40.0, check) >= 70.0, check


def test_other_photos_do_not_agree_even_when_aligned(photos):
    a, b = (working(img) for img in photos[:2])
    b = cv2.resize(b, (a.shape[1], a.shape[0]))
    ka, kb = (verify.keypoints(x) for x in (a, b))
    found = verify.agreement(ka, kb, np.eye(3))
    assert found is not None and found < 0.5
    assert verify.agreement(ka, ka, np.eye(3)) == pytest.approx(1.0)


def barrel(img: np.ndarray, k: float) -> np.ndarray:
    """The picture as a wide lens bends it: no homography maps it onto the original."""
    h, w = img.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    nx, ny = x / (w / 2) - 1, y / (h / 2) - 1
    bent = 1 + k * (nx * nx + ny * ny)
    return cv2.remap(img, (nx * bent + 1) * (w / 2), (ny * bent + 1) * (h / 2), cv2.INTER_LINEAR)


def test_a_picture_bent_off_one_homography_strays_from_it_more_than_a_resized_copy(photos):
    """The residual's premise: an edit that one homography undoes leaves only the keypoints' grain,
    as another shot's parallax does not (here a lens's bend stands in for it)."""

    def strays(edit) -> float:
        checks = [
            verify.match(verify.keypoints(working(edit(img))), verify.keypoints(working(img)))
            for img in photos
        ]
        assert all(c.verified for c in checks)
        return float(np.mean([c.residual for c in checks]))

    resized = strays(lambda img: cv2.resize(img, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA))
    assert strays(lambda img: barrel(img, 0.2)) > resized + 0.15
    assert strays(lambda img: jpeg(img, 80)) < 0.2  # not resampled: the keypoints land where they were


def test_a_homography_that_folds_or_flattens_the_picture_verifies_nothing(photos):
    """A copy's homography is a view's; a fit that collapses the picture onto a line (as RANSAC's
    did, with 21 inliers, for a recoloured copy and a stamped copy of one photo) or mirrors it is
    not, however many inliers it gathers."""
    img = working(photos[0])
    rng = np.random.default_rng(0)
    points = rng.uniform(0, min(img.shape[:2]), (50, 2)).astype(np.float32)
    tilted = cv2.getPerspectiveTransform(
        np.float32([[0, 0], [100, 0], [100, 100], [0, 100]]),
        np.float32([[5, 3], [98, 8], [103, 96], [2, 104]]),
    )
    collapsed = np.array([[-0.305, -0.121, 46.1], [-0.440, -0.175, 66.4], [-0.0066, -0.0026, 1.0]])
    mirror = np.array([[-1.0, 0.0, img.shape[1]], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert verify.plausible(np.eye(3), points) and verify.plausible(tilted, points)
    assert verify.plausible(np.diag([0.3, 0.3, 1.0]), points)  # a thumbnail's
    assert not verify.plausible(collapsed, points) and not verify.plausible(mirror, points)
    assert not verify.plausible(None, points)


def test_a_check_moves_the_percentage_by_what_it_found():
    assert verify.adjusted(60.0, None) == 60.0  # not checked
    assert verify.adjusted(60.0, verify.Check(5)) < 5.0  # failed
    assert verify.adjusted(99.0, verify.Check(5)) < 30.0  # ... though the vector was sure
    assert verify.adjusted(60.0, verify.Check(verify.MIN_INLIERS)) > 90.0  # passed, no overlap to compare
    agreeing = verify.adjusted(10.0, verify.Check(100, 0.995, 0.6))  # a resampled copy's residual
    another_shot = verify.adjusted(99.0, verify.Check(100, 0.8, 0.9))
    straying = verify.adjusted(10.0, verify.Check(100, 0.995, 1.5))
    assert agreeing > 95.0 and another_shot < 30.0
    assert straying < agreeing - 20.0  # agrees as well, but its keypoints stray from the alignment

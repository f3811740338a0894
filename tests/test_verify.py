"""Geometric verification on real photos (the examples vecsearch ships): a copy verifies and agrees
with its photo once aligned, whatever the edit; another photo does not agree; a verified hit's
percentage follows the agreement."""

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
        assert verify.adjusted(40.0, check) >= 70.0, (kind, check)
        compared += check.agreement is not None
    assert compared >= len(photos) - 1


def test_other_photos_do_not_agree_even_when_aligned(photos):
    a, b = (working(img) for img in photos[:2])
    b = cv2.resize(b, (a.shape[1], a.shape[0]))
    ka, kb = (verify.keypoints(x) for x in (a, b))
    found = verify.agreement(ka, kb, np.eye(3))
    assert found is not None and found < 0.5
    assert verify.agreement(ka, ka, np.eye(3)) == pytest.approx(1.0)


def test_a_check_moves_the_percentage_by_what_it_found():
    assert verify.adjusted(60.0, None) == 60.0  # not checked
    assert verify.adjusted(60.0, verify.Check(5)) < 5.0  # failed
    assert verify.adjusted(60.0, verify.Check(verify.MIN_INLIERS)) > 90.0  # passed, no overlap to compare
    agreeing = verify.adjusted(10.0, verify.Check(100, 0.995))
    another_shot = verify.adjusted(99.0, verify.Check(100, 0.8))
    assert agreeing > 95.0 and another_shot < 30.0

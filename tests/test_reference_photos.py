"""The reference photos ship with vecsearch, so each must be readable and its licence stated."""

import hashlib
import re
from pathlib import Path

from vecsearch.calibrate import reference_photos
from vecsearch.encoder import example_images
from vecsearch.images import load

FOLDER = Path(__file__).parents[1] / "vecsearch" / "references"
FREE = re.compile(r"^(CC0-1\.0|CC-BY-(SA-)?[34]\.0|public domain)$")


def _listed() -> dict[str, str]:
    """file → licence, from the rows of SOURCES.md's table."""
    rows = [line.split("|")[1:-1] for line in (FOLDER / "SOURCES.md").read_text().splitlines()]
    return {r[0].strip(): r[-1].strip() for r in rows if len(r) == 5 and r[0].strip().endswith(".jpg")}


def test_every_reference_photo_is_listed_with_a_free_licence_and_every_listed_one_is_there():
    listed = _listed()
    here = sorted(p.name for p in FOLDER.glob("*.jpg"))
    assert len(here) >= 10
    assert sorted(listed) == here
    assert all(FREE.match(licence) for licence in listed.values()), listed


def test_the_calibration_takes_the_examples_and_the_references_each_once_and_each_readable():
    photos = reference_photos()
    assert photos[: len(example_images())] == example_images()
    assert len(photos) == len(example_images()) + len(_listed())
    digests = {hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in photos}
    assert len(digests) == len(photos)
    for p in photos:
        pixels, _ = load(p, 320)
        assert max(pixels.shape[:2]) == 320 and min(pixels.shape[:2]) >= 150, p
        assert pixels.std() > 20, p  # a photo, not a flat image

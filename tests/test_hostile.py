"""A corpus of hostile files: every one is indexed correctly or skipped with a clear reason."""

import os

import pytest
from hostile import make_corpus

import vecsearch
from vecsearch import pathnames
from vecsearch.images import ImageError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, examples):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, make_corpus(folder, next(p for p in examples if "chelsea" in p))


@pytest.fixture(scope="module")
def hostile_index(corpus, tmp_path_factory, encoder):
    folder, _ = corpus
    return vecsearch.build(
        [folder], tmp_path_factory.mktemp("hidx") / "i", encoder=encoder, workers=2, batch_size=4, quiet=True
    )


def test_every_file_is_indexed_or_skipped_with_a_reason(corpus, hostile_index):
    _folder, expect = corpus
    indexed = {os.path.basename(p) for p in pathnames.of(hostile_index.metadata())}
    t = hostile_index.skipped()
    skipped = {os.path.basename(p): r for p, r in zip(pathnames.of(t), t["reason"].to_pylist())}
    for name, what in expect.items():
        if what == "index":
            assert name in indexed, (name, skipped.get(name))
        elif what == "skip":
            assert name in skipped and name not in indexed, name
            assert skipped[name] and "unexpected" not in skipped[name], (name, skipped[name])
        else:
            assert (name in indexed) != (name in skipped), name
    assert "too large" in skipped["bomb-50000x50000.png"]
    assert "empty" in skipped["zero-bytes.jpg"] and "not found" in skipped["dangling-link.jpg"]
    assert "FIFO" in skipped["fifo.jpg"] and "device" in skipped["endless.jpg"]
    assert not any("loop" in p for p in indexed)  # the symlink loop was not followed


def test_exif_rotated_copy_matches_its_upright_twin(corpus, hostile_index):
    folder, _ = corpus
    hits = hostile_index.search(
        str(folder / "exif-rotated.jpg"), k=10
    )  # its byte-identical siblings tie with it
    upright = [h for h in hits if h.path.endswith("upright.jpg")]
    assert upright and upright[0].similarity >= 90 and upright[0].distance < 0.1


@pytest.mark.parametrize(
    "name",
    ["zero-bytes.jpg", "truncated.png", "random-bytes.jpg", "bomb-50000x50000.png", "dangling-link.jpg"],
)
def test_hostile_queries_get_a_clear_error(corpus, hostile_index, name):
    folder, _ = corpus
    with pytest.raises(ImageError, match=name.split(".")[0].split("-")[0]):
        hostile_index.search(str(folder / name))


@pytest.mark.parametrize(
    "name",
    [
        "one-pixel.png",
        "strip-10000x10.png",
        "sixteen-bit.png",
        "animated.gif",
        "multipage.tiff",
        "image.webp",
        "cmyk.jpg",
    ],
)
def test_odd_but_valid_queries_get_an_answer(corpus, hostile_index, name):
    folder, _ = corpus
    hits = hostile_index.search(str(folder / name), k=8)  # grey and colour twins may tie with it
    assert any(os.path.basename(h.path) == name and h.similarity > 99 for h in hits), hits

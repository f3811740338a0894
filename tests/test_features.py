import cv2
import numpy as np

from vecsearch.features import colour_histogram, orb_descriptors, vlad


def test_vlad_of_a_batch_equals_vlad_of_each_image(examples):
    """The batch takes the sparse-sum path, single images the numpy one: both must agree."""
    descs = [orb_descriptors(cv2.imread(p), 1000) for p in examples[:4]] + [np.zeros((0, 32), np.uint8)]
    assert sum(map(len, descs)) > 2000 >= max(map(len, descs))
    centres = np.random.default_rng(0).random((8, 256)).astype(np.float32)
    batch = vlad(descs, centres)
    single = np.vstack([vlad([d], centres) for d in descs])
    assert batch.shape == (5, 8 * 256)
    np.testing.assert_allclose(batch, single, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(batch[:4], axis=1), 1.0, atol=1e-5)
    assert not batch[4].any()  # no keypoints, no VLAD


def test_blank_image_has_no_orb_descriptors():
    assert orb_descriptors(np.full((100, 100, 3), 128, np.uint8)).shape == (0, 32)


def test_colour_histogram_tells_colours_apart(examples):
    img = cv2.imread(examples[0])
    h = colour_histogram(img)
    same = colour_histogram(cv2.resize(img, None, fx=0.5, fy=0.5))
    other = colour_histogram(img[:, :, ::-1].copy())  # swap red and blue
    assert h.dtype == np.float32 and np.all(h >= 0)
    assert np.linalg.norm(h - same) < 0.5 * np.linalg.norm(h - other)

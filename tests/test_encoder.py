import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vecsearch.encoder import Encoder, EncoderConfig
from vecsearch.images import ImageError


def test_encode_is_unit_norm_and_same_for_path_bytes_and_array(encoder, examples):
    p = examples[3]
    by_path = encoder.encode(p)
    by_bytes = encoder.encode(Path(p).read_bytes())
    by_array = encoder.encode(cv2.imread(p))
    assert by_path.shape == (1, encoder.dim) and by_path.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(by_path), 1.0, atol=1e-5)
    np.testing.assert_array_equal(by_path, by_bytes)
    np.testing.assert_allclose(by_path, by_array, atol=0.05)  # cv2 vs Pillow JPEG decoders differ slightly


def test_save_load_and_pickle_round_trip(encoder, examples, tmp_path):
    v = encoder.encode(examples)
    loaded = Encoder.load(encoder.save(tmp_path / "enc.npz"))
    assert loaded.fingerprint() == encoder.fingerprint() and loaded.config == encoder.config
    np.testing.assert_array_equal(loaded.encode(examples), v)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(encoder)).encode(examples), v)


def test_encoder_is_deterministic_across_processes(encoder, examples, tmp_path):
    path = encoder.save(tmp_path / "enc.npz")
    code = (
        "import sys, numpy as np; from vecsearch.encoder import Encoder;"
        f"np.save(sys.argv[1], Encoder.load({str(path)!r}).encode({examples!r}))"
    )
    out = tmp_path / "v.npy"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True)
    np.testing.assert_array_equal(np.load(out), encoder.encode(examples))


def test_training_is_deterministic(examples):
    cfg = EncoderConfig(pca_dim=32, n_centres=16, n_features=300)
    a, b = Encoder.fit(examples[:4], cfg), Encoder.fit(examples[:4], cfg)
    assert a.fingerprint() == b.fingerprint()
    assert a.dim == b.dim == a.colour_dim + 32


def test_bad_input_names_itself(encoder, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ImageError, match=r"bad\.jpg"):
        encoder.encode([str(bad)])
    res = encoder.encode_files([str(bad)])
    assert res.vectors.shape == (0, encoder.dim) and res.failures[0][0] == str(bad)


def test_damaged_encoder_file_gives_clear_error(tmp_path):
    f = tmp_path / "encoder.npz"
    f.write_bytes(b"PK\x03\x04 damaged")
    with pytest.raises(ValueError, match=r"encoder\.npz"):
        Encoder.load(f)


def test_an_encoder_saved_before_colour_side_existed_keeps_its_fingerprint_and_its_vectors(
    encoder, examples, tmp_path
):
    """Indexes built before the colour copy shrank from 256 to 160 px must go on encoding queries
    as they encoded their images, under the fingerprint their vector files and manifests name."""
    import dataclasses
    import hashlib
    import json

    old_config = dataclasses.replace(encoder.config, colour_side=256)
    old = Encoder(old_config, *(getattr(encoder, k) for k in Encoder.STATE))
    path = old.save(tmp_path / "old.npz")
    with np.load(path) as z:
        stored = str(z["config"])
    assert "colour_side" not in stored  # written as vecsearch wrote it before the field existed
    h = hashlib.sha1(
        json.dumps(
            {k: v for k, v in dataclasses.asdict(old_config).items() if k != "colour_side"}, sort_keys=True
        ).encode()
    )
    for k in Encoder.STATE:
        h.update(getattr(encoder, k).tobytes())
    loaded = Encoder.load(path)
    assert (
        loaded.config.colour_side == 256
        and loaded.fingerprint() == h.hexdigest()[:16] != encoder.fingerprint()
    )
    v = loaded.encode(examples)
    np.testing.assert_array_equal(v, old.encode(examples))
    assert np.abs(v - encoder.encode(examples)).max() > 1e-3  # the setting is honoured, not ignored

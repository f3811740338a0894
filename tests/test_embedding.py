"""Vectors in and out: Arrow tables, Parquet files, and indexes built from them."""

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vecsearch
from vecsearch.embedding import vectors_from
from vecsearch.encoder import Encoder


def test_encode_table_has_fixed_size_vectors_and_errors(encoder, examples, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    t = encoder.encode_table([*examples[:3], str(bad)])
    assert t.column_names[:2] == ["path", "vector"] and "error" in t.column_names
    assert t.schema.field("vector").type == pa.list_(pa.float32(), encoder.dim)
    assert t["error"].to_pylist()[:3] == [None] * 3 and "empty" in t["error"][3].as_py()
    np.testing.assert_array_equal(vectors_from(t), encoder.encode(examples[:3]))


def test_embed_file_round_trip_gives_the_same_search_results(built, photo_dir, tmp_path, examples):
    out = vecsearch.embed([photo_dir], built.path, tmp_path / "v.parquet", workers=2)
    assert not list(tmp_path.glob(".*tmp"))  # written under a temporary name, then renamed
    t = pq.read_table(out)
    assert (
        t.num_rows == len(built)
        and t.schema.metadata[b"vecsearch.encoder"].decode() == built.encoder.fingerprint()
    )
    from_vectors = vecsearch.build(None, tmp_path / "idx", vectors=out, encoder=built.path, quiet=True)
    queries = examples[:6]
    a = [[(h.path, round(h.distance, 4)) for h in hits] for hits in built.search_many(queries, k=4)]
    b = [[(h.path, round(h.distance, 4)) for h in hits] for hits in from_vectors.search_many(queries, k=4)]
    assert a == b


def test_vectors_from_another_encoder_are_refused(built, photo_dir, tmp_path, examples):
    other = Encoder.fit(examples[:3], vecsearch.EncoderConfig(pca_dim=32, n_centres=16))
    out = vecsearch.embed([photo_dir], other, tmp_path / "v.parquet")
    with pytest.raises(ValueError, match="dimension"):
        vecsearch.add(None, built.path, vectors=out)
    with pytest.raises(ValueError, match="needs the encoder"):
        vecsearch.build(None, tmp_path / "x", vectors=out)


def test_train_alone_then_share(tmp_path, examples, photo_dir):
    enc = vecsearch.train(
        examples, tmp_path / "enc", config=vecsearch.EncoderConfig(pca_dim=32, n_centres=16, n_features=300)
    )
    assert (tmp_path / "enc" / "encoder.npz").is_file()
    a = vecsearch.build([photo_dir], tmp_path / "a", encoder=tmp_path / "enc", workers=0, quiet=True)
    assert a.encoder.fingerprint() == enc.fingerprint() == Encoder.load(tmp_path / "enc").fingerprint()
    assert pickle.loads(pickle.dumps(enc)).fingerprint() == enc.fingerprint()


def test_reading_a_vector_file_holds_one_row_group_at_a_time(tmp_path):
    """A build from a million vectors streams a 1.5 GB file: pyarrow's default pre-buffering had
    kept all of it in memory until the end of the pass (bench/RESULTS.md, scale)."""
    from vecsearch import vectors as vt

    rows, group, dim = 100_000, 4_000, 256
    v = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    table = pa.table(
        {
            "path": [f"/x/{i}.jpg" for i in range(rows)],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), dim),
        }
    )
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=group, compression="none")
    pool = pa.default_memory_pool()
    start, most, seen = pool.bytes_allocated(), 0, 0
    for t in vt.batches([tmp_path / "v.parquet"], ["path", "vector"]):
        most = max(most, pool.bytes_allocated() - start)
        np.testing.assert_array_equal(vt.vectors_of(t), v[seen : seen + len(t)])
        seen += len(t)
    assert seen == rows
    row_group_bytes = group * dim * 4  # the file holds 25 of them
    assert most < 8 * row_group_bytes, (
        f"{most / 2**20:.0f} MB held while reading a {v.nbytes / 2**20:.0f} MB file"
    )

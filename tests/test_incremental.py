"""add / remove: only new or changed files are encoded, each change is one new version."""

import os
import shutil
import time

import numpy as np
import pytest

import vecsearch


@pytest.fixture
def grown(tmp_path, examples, encoder):
    src = tmp_path / "src"
    src.mkdir()
    for p in examples[:5]:
        shutil.copy(p, src)
    index = vecsearch.build([src], tmp_path / "idx", encoder=encoder, workers=0, quiet=True)
    return src, index


def test_add_encodes_only_new_and_changed(grown, examples):
    src, index = grown
    for p in examples[5:8]:
        shutil.copy(p, src)
    added = vecsearch.add([src], index.path, workers=0, quiet=True)
    assert added.last_build.indexed == 3 and len(added) == 8 and added.version.number == 2
    assert vecsearch.add([src], index.path, workers=0, quiet=True).last_build.indexed == 0
    target = src / os.path.basename(examples[0])
    shutil.copy(examples[9], target)  # same name, new content
    os.utime(target, (time.time() + 10, time.time() + 10))
    changed = vecsearch.add([src], index.path, workers=0, quiet=True)
    assert changed.last_build.indexed == 1 and len(changed) == 8
    hits = changed.search(examples[9], k=1)
    assert hits[0].path == str(target) and hits[0].similarity > 99
    ids = changed.metadata()["id"].to_pylist()
    assert len(set(ids)) == 8 and changed.faiss.ntotal == 8


def test_remove_by_path_folder_and_missing(grown, examples):
    src, index = grown
    assert vecsearch.remove([src / os.path.basename(examples[1])], index.path) == 1
    os.remove(src / os.path.basename(examples[2]))
    assert vecsearch.remove(None, index.path, missing=True) == 1
    after = vecsearch.open(index.path)
    assert len(after) == 3 and after.faiss.ntotal == len(after.metadata())
    assert all(os.path.basename(examples[i]) not in after.metadata()["path"].to_pylist() for i in (1, 2))
    assert vecsearch.remove([src], index.path) == 3 and len(vecsearch.open(index.path)) == 0


def test_info_advises_retraining_when_the_collection_outgrew_the_encoder():
    from vecsearch.manifest import IndexSpec, Manifest
    from vecsearch.search import retrain_advice

    assert retrain_advice(Manifest(index=IndexSpec(nlist=1), encoder_trained_on=100), 50) is None
    assert "retrain" in retrain_advice(Manifest(index=IndexSpec(nlist=1), encoder_trained_on=100), 500)
    assert "IVF" in retrain_advice(Manifest(index=IndexSpec(nlist=1)), 30_000)
    assert "since the IVF" in retrain_advice(Manifest(index=IndexSpec(nlist=256, trained_on=30_000)), 200_000)


def _vector_file(path, encoder, vectors, paths):
    import pyarrow.parquet as pq

    from vecsearch import vectors as vt
    from vecsearch.images import FileInfo
    from vecsearch.vectors import EncodedFiles

    infos = [FileInfo(p, 1, 0.0, "", 1, 1) for p in paths]
    pq.write_table(vt.table(EncodedFiles(np.asarray(vectors, np.float32), infos), encoder), path)
    return path


@pytest.mark.slow
def test_pq_index_reranks_exactly_through_add_and_remove(tmp_path, examples, encoder):
    """Past the exact-search size and over its memory budget an index is IVF-PQ; its re-ranking
    rows follow every add and remove, so hits come back at their exact distances."""
    from vecsearch.check import check

    rng = np.random.default_rng(0)
    real = encoder.encode(examples)
    noisy = real[np.arange(21_000) % len(real)] + 0.05 * rng.standard_normal((21_000, encoder.dim)).astype(
        np.float32
    )
    noisy[: len(real)] = real
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    paths = examples + [f"/synthetic/{i}.jpg" for i in range(len(real), len(noisy))]
    root = tmp_path / "idx"
    index = vecsearch.build(
        None,
        root,
        vectors=_vector_file(tmp_path / "v.parquet", encoder, noisy, paths),
        encoder=encoder,
        memory_budget="2M",
        workers=0,
        quiet=True,
    )
    assert (
        ",PQ" in index.manifest.index.factory
        and index.manifest.index.rerank
        and index.rerank_rows is not None
    )
    # Tight clusters of near-equidistant points: PQ ranks them poorly, so the build raised the
    # re-ranking factor past 8.
    assert (
        index.manifest.index.recall_at_10 >= 0.95
        and index.manifest.index.rerank > 8
        and index.rerank_rows.factor == index.manifest.index.rerank
    )
    assert (
        index.calibration.fitted_on["positives"] >= 100
    )  # few paths readable here: the example photos stand in, 10 copies each
    hit = index.search(examples[3], k=3)[0]
    assert hit.path == examples[3] and hit.distance < 1e-3 and hit.similarity > 99

    fresh = real[:2] + 0.3 * rng.standard_normal((2, encoder.dim)).astype(np.float32)
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    grown = vecsearch.add(
        None,
        root,
        vectors=_vector_file(tmp_path / "more.parquet", encoder, fresh, ["/new/a.jpg", "/new/b.jpg"]),
        quiet=True,
    )
    assert (
        len(grown) == len(noisy) + 2
        and grown.manifest.files["rerank"].name != index.manifest.files["rerank"].name
    )
    found = grown.search_vectors(fresh, k=1)
    assert [h[0].path for h in found] == ["/new/a.jpg", "/new/b.jpg"] and max(
        h[0].distance for h in found
    ) < 1e-3

    assert vecsearch.remove([examples[3]], root, quiet=True) == 1
    shrunk = vecsearch.open(root)
    assert shrunk.manifest.files["rerank"] == grown.manifest.files["rerank"]  # unchanged rows: the same file
    assert examples[3] not in [h.path for h in shrunk.search(examples[3], k=5)]
    assert check(root) == []


def test_an_open_index_still_answers_after_its_files_are_deleted(grown, examples):
    """A reader that opened version 1 keeps answering after two commits have deleted version 1's files."""
    src, index = grown
    shutil.copy(examples[6], src)
    vecsearch.add([src], index.path, workers=0, quiet=True)
    vecsearch.remove([str(src / os.path.basename(examples[6]))], index.path, quiet=True)
    assert not (index.path / "metadata.000001.parquet").exists()
    hits = index.search(examples[0], k=3)
    assert hits[0].path == str(src / os.path.basename(examples[0])) and hits[0].similarity > 99
    assert len(index.metadata()) == 5

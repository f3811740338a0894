"""End to end on real photos: build an index, query it with edited copies and strangers."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import mild_edit, write_bad_files

import vecsearch
from vecsearch import calibrate, sources, workdir
from vecsearch import vectors as vt


def test_edited_copy_comes_back_first_at_90_percent(built, examples):
    for p in examples:
        if "rocket" in p:
            continue
        hits = built.search(mild_edit(cv2.imread(p)), k=3)
        assert Path(hits[0].path).name == Path(p).name, p
        assert hits[0].similarity >= 90, (p, hits[0])
        assert hits[0].rank == 1 and hits[1].similarity <= hits[0].similarity


def test_same_image_is_100_and_stranger_stays_under_50(built, examples):
    chelsea = next(p for p in examples if "chelsea" in p)
    assert built.search(chelsea, k=1)[0].similarity == pytest.approx(100.0, abs=0.05)
    rocket = next(p for p in examples if "rocket" in p)
    hits = built.search(rocket, k=5)
    assert hits and max(h.similarity for h in hits) < 50
    assert built.search(rocket, k=5, min_similarity=50) == []


def test_search_many_matches_search_and_reads_metadata(built, examples):
    many = built.search_many(examples[:4], k=4)
    assert [h.id for h in many[2]] == [h.id for h in built.search(examples[2], k=4)]
    meta = built.metadata([h.id for h in many[0]])
    assert set(meta.column_names) >= {"id", "path", "bytes", "mtime", "sha1", "width", "height", "added_at"}
    assert len(meta) == 4 and all(w > 0 for w in meta["width"].to_pylist())


def test_bad_files_are_skipped_and_listed(tmp_path, photo_dir, encoder, examples):
    src = tmp_path / "src"
    shutil.copytree(photo_dir, src)
    bad = write_bad_files(src / "bad", examples[0])
    index = vecsearch.build([src], tmp_path / "idx", encoder=encoder, workers=0, quiet=True)
    assert len(index) == 10
    skipped = dict(zip(index.skipped()["path"].to_pylist(), index.skipped()["reason"].to_pylist()))
    assert set(skipped) == set(bad.values())
    assert "empty" in skipped[bad["empty.jpg"]]
    assert index.info()["skipped"] == 4


def test_resume_after_interruption_gives_the_same_index(tmp_path, photo_dir, encoder):
    """Simulate a build killed after its first batch: the restart encodes only the rest."""
    root = tmp_path / "idx"
    paths, _ = sources.scan([photo_dir], quiet=True)
    work = workdir.WorkDir(root, workdir.key("build", paths, encoder.fingerprint()))
    encoder.save(work.encoder_path)
    first = encoder.encode_files(paths[:3], calibrate.copy_plan(len(paths)))
    work.write_chunk(0, vt.chunk(first, encoder, {p: i for i, p in enumerate(paths)}))
    resumed = vecsearch.build([photo_dir], root, encoder=encoder, workers=0, batch_size=3, quiet=True)
    straight = vecsearch.build(
        [photo_dir], tmp_path / "idx2", encoder=encoder, workers=0, batch_size=3, quiet=True
    )
    assert not (root / workdir.NAME).exists()
    a, b = resumed.metadata(), straight.metadata()
    assert a["id"].to_pylist() == b["id"].to_pylist() and a["path"].to_pylist() == b["path"].to_pylist()
    # The calibration copies made before the interruption were kept with their chunk.
    assert resumed.calibration.to_json() == straight.calibration.to_json()
    q = encoder.encode(paths)
    assert [h.id for h in resumed.search_vectors(q, 3)[5]] == [h.id for h in straight.search_vectors(q, 3)[5]]


def test_rebuild_makes_a_new_version_and_removes_old_files(tmp_path, photo_dir, encoder):
    root = tmp_path / "idx"
    one = vecsearch.build([photo_dir], root, encoder=encoder, workers=0, quiet=True)
    two = vecsearch.build([photo_dir], root, workers=0, quiet=True)  # reuses the index's encoder
    three = vecsearch.build([photo_dir], root, workers=0, quiet=True)
    assert (one.version.number, two.version.number, three.version.number) == (1, 2, 3)
    assert two.encoder.fingerprint() == encoder.fingerprint()
    names = {p.name for p in root.iterdir() if not p.name.startswith(".")}
    assert (
        "index.000001.faiss" not in names and "metadata.000001.parquet" not in names
    )  # two versions back: gone
    assert "index.000002.faiss" in names  # previous: kept for readers still on it
    assert names >= {"encoder.000001.npz"}  # the unchanged encoder is shared, not copied
    assert len(vecsearch.open(root)) == len(one)


def test_parallel_build_equals_in_process_build(tmp_path, photo_dir, encoder):
    a = vecsearch.build([photo_dir], tmp_path / "a", encoder=encoder, workers=0, batch_size=4, quiet=True)
    b = vecsearch.build([photo_dir], tmp_path / "b", encoder=encoder, workers=2, batch_size=4, quiet=True)
    assert a.metadata()["path"].to_pylist() == b.metadata()["path"].to_pylist()
    q = encoder.encode(a.metadata()["path"].to_pylist())
    da = [[(h.id, round(h.distance, 5)) for h in hits] for hits in a.search_vectors(q, 4)]
    db = [[(h.id, round(h.distance, 5)) for h in hits] for hits in b.search_vectors(q, 4)]
    assert da == db
    # Calibration copies are encoded on the pool too: their edits depend on the path, not the worker.
    assert a.calibration.to_json() == b.calibration.to_json()


def test_calibration_copies_made_while_encoding_equal_those_made_later(tmp_path, photo_dir, encoder):
    """A build makes its calibration copies from the pixels it decodes anyway; a refit (or a build
    from vectors) makes them from the files on the executor. Both must be the same copies."""
    from vecsearch.calibrate import CopyPlan, edited_copies, encode_copies, source_key
    from vecsearch.images import load

    paths, _ = sources.scan([photo_dir], quiet=True)
    decoded = {p: load(p, encoder.config.max_side) for p in paths}
    keys = {p: source_key(info, p) for p, (_, info) in decoded.items()}
    plan = CopyPlan(rate=0.5, copies=3, seed=7)
    assert 0 < sum(plan.wants(keys[p]) for p in paths) < len(paths)
    assert {p for p in paths if CopyPlan(0.5, 3, seed=8).wants(keys[p])} != {
        p for p in paths if plan.wants(keys[p])
    }  # another seed, another sample
    # A seed whose edits enlarge some image past the encoder's working size (it must be shrunk back,
    # as a query would be).
    seed = next(
        s
        for s in range(200)
        if any(
            max(e.shape[:2]) > encoder.config.max_side
            for p in paths
            for e in edited_copies(decoded[p][0], keys[p], 6, s)
        )
    )
    made = encoder.encode_files(paths, CopyPlan(rate=1.0, copies=6, seed=seed)).derived
    assert list(made) == paths
    later = encode_copies(encoder, paths, copies=6, seed=seed)
    for (path, vectors), again in zip(made.items(), later):
        assert vectors.shape == (6, 2 * encoder.dim + 1)  # query rows: vector, mirror, colourless
        np.testing.assert_allclose(vectors, again, atol=1e-6, err_msg=path)


def test_tiny_collection_trains_its_own_encoder(tmp_path, examples):
    index = vecsearch.build(examples[:2], tmp_path / "idx", workers=0, quiet=True)
    assert len(index) == 2
    assert index.search(examples[0], k=1)[0].similarity > 99


def test_no_images_and_bad_arguments_are_clear_errors(tmp_path, built, examples):
    (tmp_path / "empty").mkdir()
    with pytest.raises(sources.NoImagesError, match="no images found"):
        vecsearch.build([tmp_path / "empty"], tmp_path / "idx", workers=0, quiet=True)
    with pytest.raises(ValueError, match="k must be"):
        built.search(examples[0], k=0)
    with pytest.raises(ValueError, match="percentage"):
        built.search(examples[0], min_similarity=150)


@pytest.mark.slow
def test_a_killed_worker_costs_no_image(tmp_path, examples, encoder):
    """SIGKILL a pool worker mid-build: its batches are re-run and every image is still indexed."""
    import os
    import signal
    import threading
    import time

    import psutil

    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        for p in examples:
            shutil.copy(p, src / f"{i}-{Path(p).name}")
    killed = []

    def kill_a_worker():
        me = psutil.Process()
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            servers = [c for c in me.children() if "forkserver" in " ".join(c.cmdline())]
            workers = [w for srv in servers for w in srv.children()]  # pool workers fork from the server
            if workers and (tmp_path / "idx" / workdir.NAME).exists():
                os.kill(workers[-1].pid, signal.SIGKILL)
                killed.append(workers[-1].pid)
            time.sleep(0.01)

    t = threading.Thread(target=kill_a_worker)
    t.start()
    index = vecsearch.build([src], tmp_path / "idx", encoder=encoder, workers=2, batch_size=4, quiet=True)
    t.join()
    assert killed, "no worker was killed: the test did not test anything"
    assert len(index) == 12 * len(examples) and index.info()["skipped"] == 0

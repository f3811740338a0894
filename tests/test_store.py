import json
import shutil

import numpy as np
import pytest

import vecsearch
from vecsearch import manifest, store
from vecsearch.files import sha256
from vecsearch.manifest import IndexDirError, read_version


@pytest.fixture
def copy(tmp_path, built):
    dst = tmp_path / "copy"
    shutil.copytree(built.path, dst)
    return dst


def test_manifest_lists_checksummed_files(built):
    m = json.loads((built.path / "manifest.json").read_text())
    assert m["format"] == manifest.FORMAT and m["counts"]["images"] == len(built)
    for role in ("encoder", "index", "metadata", "calibration", "skipped"):
        f = built.path / m["files"][role]["name"]
        assert sha256(f) == m["files"][role]["sha256"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "manifest.json").write_text("{not json"), "damaged manifest"),
        (
            lambda d: (d / "manifest.json").write_text(json.dumps({"format": 99, "files": {}})),
            "newer than this vecsearch",
        ),
        (lambda d: read_version(d).file("metadata").unlink(), "metadata file is missing"),
        (lambda d: read_version(d).file("index").write_bytes(b"garbage"), "index file is damaged"),
    ],
)
def test_damaged_index_gives_one_clear_error(copy, damage, message):
    damage(copy)
    with pytest.raises(IndexDirError, match=message):
        vecsearch.open(copy)


def test_second_writer_is_refused(tmp_path):
    refused = pytest.raises(IndexDirError, match="another vecsearch process")
    with store.writer_lock(tmp_path, create=True), refused, store.writer_lock(tmp_path, create=True):
        pass


def test_a_file_shared_by_the_next_version_keeps_its_checksum(tmp_path, photo_dir, encoder):
    """The next version reuses unchanged files (the encoder; a PQ index's re-ranking vectors) and
    their manifest entries: no re-hashing of a large file per commit, and damage to a shared file
    is reported by ``check``, not blessed with a fresh checksum."""
    from vecsearch.check import check

    root = tmp_path / "idx"
    first = vecsearch.build([photo_dir], root, encoder=encoder, workers=0, quiet=True)
    shared = first.version.file("encoder")
    with open(shared, "ab") as f:
        f.write(b"junk")  # damage that loading the encoder does not notice
    assert vecsearch.remove([first.metadata()["path"][0].as_py()], root, quiet=True) == 1
    second = read_version(root)
    assert second.number == 2 and second.manifest.files["encoder"] == first.manifest.files["encoder"]
    assert any("encoder" in p and "bytes" in p for p in check(root))


def test_metadata_reads_from_many_threads_at_once(tmp_path):
    """A server searches on several threads over one opened index: the metadata reads must not
    share a Parquet reader (pyarrow's is not thread-safe: reads fail now and then)."""
    import threading

    import pyarrow as pa

    from vecsearch.store import Metadata
    from vecsearch.vectors import write_parquet

    n = 100_000
    file = tmp_path / "metadata.parquet"
    write_parquet(pa.table({"id": np.arange(n), "path": [f"/photos/{i:06d}.jpg" for i in range(n)]}), file)
    meta = Metadata(file)
    failures: list[str] = []

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(150):
            ids = rng.integers(0, n, 12)
            try:
                got = meta.paths(ids)
                if got != {int(i): f"/photos/{i:06d}.jpg" for i in ids}:
                    failures.append("wrong rows")
            except Exception as e:  # any failure is what the test is about
                failures.append(repr(e))

    threads = [threading.Thread(target=reader, args=(s,), daemon=True) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "reads hung"
    assert failures == []

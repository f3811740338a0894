"""The index directory: versioned files, a manifest switched atomically, Parquet metadata, a writer lock.

Every commit writes its files under new versioned names beside the old ones, then replaces
``manifest.json``. A reader opens whatever manifest it finds and gets one consistent version; a
killed writer leaves the previous manifest and its files untouched. Files of the previous version
are kept one more commit so that readers that just read the old manifest can still open them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import platform
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .files import fsync, sha256, write_bytes
from .manifest import MANIFEST, FileEntry, IndexDirError, Manifest, Version
from .vectors import FACTS

LOCK = ".lock"

METADATA_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("path", pa.string()),
        ("bytes", pa.int64()),
        ("mtime", pa.float64()),
        ("sha1", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("added_at", pa.timestamp("s", tz="UTC")),
    ]
)
SKIPPED_SCHEMA = pa.schema([("path", pa.string()), ("reason", pa.string())])
SLICED_RUNS = 100  # rows looked up by slicing up to this many runs, by Table.take above
VERSIONED = re.compile(
    r"(encoder|index|metadata|calibration|skipped|rerank)\.\d{6}\.(npz|faiss|parquet|json|npy)"
)


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import cv2
    import faiss

    try:
        ours = version("vecsearch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        ours = "unknown"
    return {
        "vecsearch": ours,
        "faiss": faiss.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "python": platform.python_version(),
    }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """One writer per index directory; a second one is refused at once with a clear message."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise IndexDirError(
                    f"{root}: another vecsearch process is writing this index; try again when it has finished"
                ) from None
            raise
        yield
    finally:
        os.close(fd)


def next_file(root: Path, previous: Version | None, role: str, suffix: str) -> Path:
    """Where the next version's ``role`` file goes."""
    return root / f"{role}.{(previous.number if previous else 0) + 1:06d}{suffix}"


def commit(root: Path, files: dict[str, Path], manifest: Manifest, previous: Version | None) -> Version:
    """Make ``files`` (role → path inside root, already written) the new current version.

    Files are fsynced and checksummed into the manifest, which is switched last; a file the previous
    version already holds (versioned files never change once committed) keeps its entry, so that
    a 1 GB re-ranking file is not hashed again by every add or remove. Files used by neither the
    new nor the previous version are then deleted.
    """
    entries = {}
    before = previous.manifest.files if previous else {}
    for role, path in files.items():
        if role in before and before[role].name == path.name:
            entries[role] = before[role]
            continue
        fsync(path)
        entries[role] = FileEntry(path.name, path.stat().st_size, sha256(path))
    fsync(root)
    manifest = dataclasses.replace(manifest, files=entries, committed_at=now())
    write_bytes(root / MANIFEST, manifest.to_json().encode())
    fsync(root)
    keep = {e.name for e in entries.values()} | {e.name for e in before.values()}
    for p in root.iterdir():  # only files of older versions: nothing a user put there
        if p.is_file() and p.name not in keep and VERSIONED.fullmatch(p.name):
            with contextlib.suppress(OSError):
                p.unlink()
    return Version(root, manifest)


def metadata_rows(t: pa.Table, added_at: int) -> pa.Table:
    """Metadata rows from a vector table with ids (file facts null where the table has none)."""
    cols = {"id": t["id"], "path": t["path"]}
    for name, typ in FACTS:
        cols[name] = t[name].cast(typ) if name in t.column_names else pa.nulls(len(t), typ)
    cols["added_at"] = pa.array([added_at] * len(t), pa.timestamp("s", tz="UTC"))
    return pa.table(cols, schema=METADATA_SCHEMA)


def skipped_table(skipped: list[tuple[str, str]]) -> pa.Table:
    return pa.table(
        {"path": [p for p, _ in skipped], "reason": [r for _, r in skipped]}, schema=SKIPPED_SCHEMA
    )


def read_skipped(path: Path) -> list[tuple[str, str]]:
    t = pq.read_table(path)
    return list(zip(t["path"].to_pylist(), t["reason"].to_pylist()))


def open_metadata(path: Path) -> pq.ParquetFile:
    """The metadata file, opened (memory-mapped): it stays readable after a later commit deletes it,
    so a reader that opened a version can look up its rows however many commits follow."""
    try:
        return pq.ParquetFile(path, memory_map=True)
    except (OSError, pa.ArrowInvalid) as e:
        raise IndexDirError(f"{path}: cannot read metadata ({e})") from None


def read_metadata(source: Path | pq.ParquetFile) -> pa.Table:
    """The whole metadata table, in METADATA_SCHEMA's types (Parquet stores seconds as ms)."""
    f = source if isinstance(source, pq.ParquetFile) else open_metadata(source)
    try:
        return f.read().cast(METADATA_SCHEMA)
    except (OSError, pa.ArrowInvalid, ValueError) as e:
        name = source if isinstance(source, Path) else "metadata"
        raise IndexDirError(f"{name}: cannot read metadata ({e})") from None


def read_metadata_rows(
    source: Path | pq.ParquetFile, ids: np.ndarray, columns: list[str] | None = None
) -> pa.Table:
    """Only the rows with the given ids (in id order), reading only the row groups that can hold them."""
    f = source if isinstance(source, pq.ParquetFile) else open_metadata(source)
    wanted = np.sort(np.asarray(ids, np.int64).ravel())
    wanted = wanted[np.r_[True, wanted[1:] != wanted[:-1]]] if len(wanted) else wanted
    col = f.schema_arrow.get_field_index("id")
    groups = []
    for g in range(f.metadata.num_row_groups):
        stats = f.metadata.row_group(g).column(col).statistics
        if (
            stats is None
            or not stats.has_min_max
            or np.searchsorted(wanted, stats.min) < np.searchsorted(wanted, stats.max, "right")
        ):
            groups.append(g)
    table = f.read_row_groups(groups, columns=columns) if groups else METADATA_SCHEMA.empty_table()
    # Rows are sorted by id (every writer sorts), so a binary search finds them.
    have = table["id"].to_numpy()
    pos = np.minimum(np.searchsorted(have, wanted), max(len(have) - 1, 0))
    found = pos[have[pos] == wanted] if len(have) else pos[:0]
    # A few runs of consecutive rows (a query's hits): zero-copy slices, because Table.take imports
    # pyarrow.compute, 30 ms of a one-image query process. Many (a batch): take.
    starts = np.flatnonzero(np.r_[True, np.diff(found) != 1]) if len(found) else found
    if len(starts) > SLICED_RUNS:
        return table.take(pa.array(found))
    ends = np.r_[starts[1:], len(found)]
    slices = [table.slice(int(found[a]), int(b - a)) for a, b in zip(starts, ends)]
    return pa.concat_tables(slices or [table.slice(0, 0)])

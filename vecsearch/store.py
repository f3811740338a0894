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
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import pathnames
from .files import fsync, sha256, write_bytes
from .manifest import MANIFEST, WORK, FileEntry, IndexDirError, Manifest, Version, read_version
from .pathnames import BYTES
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
def writer_lock(root: Path, create: bool = False) -> Iterator[None]:
    """One writer per index directory; a second one is refused at once with a clear message.

    Only a build may create the directory (``create``). If it then fails before anything worth
    keeping is there (a version, or work to resume), the folders it made are removed again.
    """
    if root.exists() and not root.is_dir():
        raise IndexDirError(f"{root}: is a file, not an index directory")
    if not create:
        read_version(root)  # refuses a missing or unfinished index before the lock file is made
    made = None
    if not root.exists():
        made = root
        while not made.parent.exists():
            made = made.parent
        root.mkdir(parents=True)
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
    except BaseException:
        if made is not None:
            _remove_unused(root, made)
        raise
    finally:
        os.close(fd)


def _remove_unused(root: Path, top: Path) -> None:
    """Remove the lock and empty folders from ``root`` up to ``top``, unless work was kept."""
    with contextlib.suppress(OSError):
        (root / WORK).rmdir()  # only if empty: chunks are work to resume
    if (root / WORK).exists() or (root / MANIFEST).exists():
        return
    with contextlib.suppress(OSError):
        (root / LOCK).unlink()
    for d in [root, *root.parents]:
        try:
            d.rmdir()
        except OSError:
            return
        if d == top:
            return


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
    cols = {"id": t["id"], **pathnames.columns(pathnames.of(t))}
    for name, typ in FACTS:
        cols[name] = t[name].cast(typ) if name in t.column_names else pa.nulls(len(t), typ)
    cols["added_at"] = pa.array([added_at] * len(t), pa.timestamp("s", tz="UTC"))
    return pa.table(cols, schema=_schema(BYTES in cols))


def _schema(exact_paths: bool) -> pa.Schema:
    return METADATA_SCHEMA.append(pa.field(BYTES, pa.binary())) if exact_paths else METADATA_SCHEMA


def join_metadata(parts: list[pa.Table]) -> pa.Table:
    """Metadata tables as one, sorted by id; with ``path_bytes`` only if some row still needs it."""
    t = pa.concat_tables([METADATA_SCHEMA.empty_table(), *parts], promote_options="default").sort_by("id")
    if BYTES in t.column_names and t[BYTES].null_count == len(t):
        t = t.drop_columns([BYTES])
    return t


def skipped_table(skipped: list[tuple[str, str]]) -> pa.Table:
    cols = {
        **pathnames.columns([p for p, _ in skipped]),
        "reason": pa.array([r for _, r in skipped], pa.string()),
    }
    schema = SKIPPED_SCHEMA.append(pa.field(BYTES, pa.binary())) if BYTES in cols else SKIPPED_SCHEMA
    return pa.table({name: cols[name] for name in schema.names}, schema=schema)


def read_skipped_table(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise IndexDirError(f"{path}: damaged list of skipped files ({e})") from None


def read_skipped(path: Path) -> list[tuple[str, str]]:
    t = read_skipped_table(path)
    return list(zip(pathnames.of(t), t["reason"].to_pylist()))


class Metadata:
    """A version's metadata file (id, path, file facts), opened and memory-mapped: it stays readable
    after a later commit deletes it, so a reader keeps answering however many commits follow. Each
    thread reads through its own Parquet reader over the one mapping (a reader is not safe to share
    between threads: a server searches on several). Any damage met while reading is an
    IndexDirError naming the file."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        try:
            with pa.memory_map(str(path)) as mapped:
                self._mapped = mapped.read_buffer()  # zero-copy: the mapping outlives the file
            self.exact_paths = BYTES in self.file.schema_arrow.names
        except (OSError, pa.ArrowInvalid) as e:
            raise IndexDirError(f"{path}: cannot read metadata ({e})") from None

    @property
    def file(self) -> pq.ParquetFile:
        """This thread's reader."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = pq.ParquetFile(pa.BufferReader(self._mapped))
        return reader

    def _damaged(self, e: Exception) -> IndexDirError:
        return IndexDirError(f"{self.path}: damaged metadata ({str(e).splitlines()[0][:200]})")

    def read(self) -> pa.Table:
        """The whole table, in METADATA_SCHEMA's types (Parquet stores seconds as ms)."""
        try:
            return self.file.read().cast(_schema(self.exact_paths))
        except (OSError, pa.ArrowInvalid, ValueError) as e:
            raise self._damaged(e) from None

    def rows(self, ids: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """Only the rows with the given ids (in id order), reading only the row groups that can hold
        them."""
        if columns is not None and self.exact_paths and "path" in columns:
            columns = [*columns, BYTES]
        try:
            return _rows(self.file, ids, columns)
        except (OSError, pa.ArrowInvalid) as e:
            raise self._damaged(e) from None

    def paths(self, ids: np.ndarray) -> dict[int, str]:
        """id → exact path of the given ids."""
        if not len(ids):
            return {}
        t = self.rows(ids, ["id", "path"])
        return dict(zip(t["id"].to_pylist(), pathnames.of(t)))

    def facts(self, ids: np.ndarray) -> dict[int, tuple[str, int, int, int]]:
        """id → (exact path, width, height, bytes) of the given ids: what a search hit carries."""
        if not len(ids):
            return {}
        t = self.rows(ids, ["id", "path", "width", "height", "bytes"])
        columns = (t[c].to_pylist() for c in ("width", "height", "bytes"))
        return {i: (p, *f) for i, p, *f in zip(t["id"].to_pylist(), pathnames.of(t), *columns)}


def read_metadata(path: Path) -> pa.Table:
    return Metadata(path).read()


def _rows(f: pq.ParquetFile, ids: np.ndarray, columns: list[str] | None) -> pa.Table:
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
    # One thread: a query reads a few rows, and starting Arrow's pool costs more than it saves.
    table = (
        f.read_row_groups(groups, columns=columns, use_threads=False)
        if groups
        else METADATA_SCHEMA.empty_table()
    )
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

"""The index directory: versioned files, a manifest switched atomically, Parquet metadata, a writer lock.

Every commit writes its files under new versioned names beside the old ones, then replaces
``manifest.json`` (temp file, fsync, rename). A reader opens whatever manifest it finds and gets one
consistent version; a killed writer leaves the previous manifest and its files untouched. Files of
the previous version are kept one more commit so that readers that just read the old manifest can
still open them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
WORK = ".build"

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
ROW_GROUP = 8_192  # a query reads whole row groups of metadata: keep them small
SLICED_RUNS = 100  # rows looked up by slicing up to this many runs, by Table.take above


class IndexError_(RuntimeError):
    """A missing, damaged or incompatible index directory; the message names the file."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    import cv2
    import faiss

    from . import __version__

    return {
        "vecsearch": __version__,
        "faiss": faiss.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "python": platform.python_version(),
    }


@dataclass
class Version:
    """One committed version of an index directory, as its manifest describes it."""

    root: Path
    manifest: dict[str, Any]

    def file(self, role: str) -> Path:
        try:
            return self.root / self.manifest["files"][role]["name"]
        except KeyError:
            raise IndexError_(f"{self.root / MANIFEST}: lists no '{role}' file") from None

    @property
    def number(self) -> int:
        return int(self.manifest["version"])


def read_manifest(root: str | os.PathLike) -> Version:
    """The current version of the index at ``root``; IndexError_ with a one-line reason otherwise."""
    root = Path(root).expanduser()
    path = root / MANIFEST
    if not root.exists():
        raise IndexError_(f"{root}: no index here (build one with 'vecsearch build SOURCE --index {root}')")
    if not path.is_file():
        raise IndexError_(f"{root}: not a vecsearch index (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexError_(f"{path}: damaged manifest ({e})") from None
    if not isinstance(manifest, dict) or "format" not in manifest or "files" not in manifest:
        raise IndexError_(f"{path}: damaged manifest (missing 'format' or 'files')")
    if int(manifest["format"]) > FORMAT:
        raise IndexError_(
            f"{path}: index format {manifest['format']} is newer than this vecsearch reads ({FORMAT}); upgrade vecsearch"
        )
    return Version(root, manifest)


def resolve_encoder_path(path: str | os.PathLike) -> Path:
    """An encoder file from a .npz path, a folder holding encoder.npz, or an index directory."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / MANIFEST).exists():
            return read_manifest(p).file("encoder")
        if (p / "encoder.npz").exists():
            return p / "encoder.npz"
        raise IndexError_(f"{p}: holds neither an index nor an encoder.npz")
    if not p.exists():
        raise IndexError_(f"{p}: no such encoder file or index directory")
    return p


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
                raise IndexError_(
                    f"{root}: another vecsearch process is writing this index; try again when it has finished"
                ) from None
            raise
        yield
    finally:
        os.close(fd)


VERSIONED = re.compile(
    r"(encoder|index|metadata|calibration|skipped|rerank)\.\d{6}\.(npz|faiss|parquet|json|npy)"
)


def versioned_name(role: str, version: int, suffix: str) -> str:
    return f"{role}.{version:06d}{suffix}"


def commit(root: Path, files: dict[str, Path], manifest: dict[str, Any], previous: Version | None) -> Version:
    """Make ``files`` (role → path inside root, already written) the new current version.

    Files are fsynced and checksummed into the manifest, which is switched last; a file the previous
    version already holds (versioned files never change once committed) keeps its entry, so that
    a 1 GB re-ranking file is not hashed again by every add or remove. Files used by neither the
    new nor the previous version are then deleted.
    """
    entries = {}
    before = previous.manifest["files"] if previous else {}
    for role, path in files.items():
        if role in before and before[role]["name"] == path.name:
            entries[role] = before[role]
            continue
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        entries[role] = {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    fsync_dir(root)
    manifest = dict(
        manifest,
        format=FORMAT,
        files=entries,
        committed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    manifest.setdefault("libraries", library_versions())
    atomic_write_bytes(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    fsync_dir(root)
    keep = {e["name"] for e in entries.values()} | (
        {f["name"] for f in previous.manifest["files"].values()} if previous else set()
    )
    for p in root.iterdir():  # only files of older versions: nothing a user put there
        if p.is_file() and p.name not in keep and VERSIONED.fullmatch(p.name):
            with contextlib.suppress(OSError):
                p.unlink()
    return Version(root, manifest)


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write via a temp name and rename, so a crash never leaves a half-written file under ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def open_metadata(path: Path) -> pq.ParquetFile:
    """The metadata file, opened (memory-mapped): it stays readable after a later commit deletes it,
    so a reader that opened a version can look up its rows however many commits follow."""
    try:
        return pq.ParquetFile(path, memory_map=True)
    except (OSError, pa.ArrowInvalid) as e:
        raise IndexError_(f"{path}: cannot read metadata ({e})") from None


def read_metadata(source: Path | pq.ParquetFile) -> pa.Table:
    """The whole metadata table, in METADATA_SCHEMA's types (Parquet stores seconds as ms)."""
    f = source if isinstance(source, pq.ParquetFile) else open_metadata(source)
    try:
        return f.read().cast(METADATA_SCHEMA)
    except (OSError, pa.ArrowInvalid, ValueError) as e:
        raise IndexError_(
            f"{source if isinstance(source, Path) else 'metadata'}: cannot read metadata ({e})"
        ) from None


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
    # pyarrow.compute, 100 ms of a one-image query process. Many (a batch): take.
    starts = np.flatnonzero(np.r_[True, np.diff(found) != 1]) if len(found) else found
    if len(starts) > SLICED_RUNS:
        return table.take(pa.array(found))
    ends = np.r_[starts[1:], len(found)]
    return pa.concat_tables(
        [table.slice(int(found[a]), int(b - a)) for a, b in zip(starts, ends)] or [table.slice(0, 0)]
    )

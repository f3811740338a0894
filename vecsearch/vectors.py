"""The vector table: one Arrow/Parquet format for encoded images, for a build's chunks, `embed` and
`--vectors`.

Columns: ``path``, ``vector`` (``fixed_size_list<float32>[d]``, null where the image failed), the
file facts the index metadata keeps (bytes, mtime, sha1, width, height), ``error`` (null where it
worked) and ``path_bytes`` (the exact name where it is not UTF-8, see ``pathnames.py``; else
null). A build's chunk files add ``id`` (the image's id in the index) and ``derived`` (vectors of
images made from the file's pixels: calibration copies). The schema metadata names the encoder
(fingerprint, dimension), so vectors are never mixed with an index whose encoder made different
ones. Tables from other tools only need ``path`` and ``vector``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import pathnames
from .files import replacing
from .images import FileInfo

FACTS = [
    ("bytes", pa.int64()),
    ("mtime", pa.float64()),
    ("sha1", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
]
READ_BATCH = 16_384
ROW_GROUP = 8_192  # a query reads whole row groups of metadata: keep them small
DERIVED = "derived"


class Maker(Protocol):
    """What the table needs of the encoder that made its vectors."""

    @property
    def dim(self) -> int: ...

    def fingerprint(self) -> str: ...


@dataclass
class EncodedFiles:
    """A batch of encoded files: vectors of the good ones, reasons for the bad ones, and the vectors
    of images derived from some files' pixels (path → (c, dim))."""

    vectors: np.ndarray
    infos: list[FileInfo] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    derived: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def crashed(cls, path: str, dim: int) -> EncodedFiles:
        """The result for a file that killed the worker process decoding it."""
        return cls(
            np.zeros((0, dim), np.float32), [], [(path, "a worker process died while decoding this file")]
        )

    def __add__(self, other: EncodedFiles) -> EncodedFiles:
        return EncodedFiles(
            np.vstack([self.vectors, other.vectors]),
            self.infos + other.infos,
            self.failures + other.failures,
            self.derived | other.derived,
        )


def schema(maker: Maker) -> pa.Schema:
    d = maker.dim
    fields = [
        ("path", pa.string()),
        ("vector", pa.list_(pa.float32(), d)),
        *FACTS,
        ("error", pa.string()),
        (pathnames.BYTES, pa.binary()),
    ]
    meta = {b"vecsearch.encoder": maker.fingerprint().encode(), b"vecsearch.dim": str(d).encode()}
    return pa.schema(fields, metadata=meta)


def _fixed_lists(x: np.ndarray, d: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(x, np.float32).ravel(), pa.float32()), d
    )


def table(result: EncodedFiles, maker: Maker) -> pa.Table:
    """The rows of one encoded batch: good files first, then failures with their reason."""
    d = maker.dim
    n_bad = len(result.failures)
    vectors = _fixed_lists(result.vectors, d)
    if n_bad:
        vectors = pa.concat_arrays([vectors, pa.nulls(n_bad, pa.list_(pa.float32(), d))])
    pad = [None] * n_bad
    facts = [pa.array([getattr(i, name) for i in result.infos] + pad, typ) for name, typ in FACTS]
    names = pathnames.columns([i.path for i in result.infos] + [p for p, _ in result.failures])
    errors = [None] * len(result.infos) + [r for _, r in result.failures]
    exact = names.get(pathnames.BYTES, pa.nulls(len(errors), pa.binary()))
    columns = [names["path"], vectors, *facts, pa.array(errors, pa.string()), exact]
    return pa.Table.from_arrays(columns, schema=schema(maker))


def chunk(result: EncodedFiles, maker: Maker, ids: dict[str, int]) -> pa.Table:
    """A build's chunk: the batch's table, each row's id (from ``ids``, path → id) and the rows of
    its derived images (``encoder.Queries.rows``; a list, null for most rows)."""
    t = table(result, maker)
    names = pathnames.of(t)
    t = t.append_column("id", pa.array([ids[p] for p in names], pa.int64()))
    if not result.derived:
        return t
    made = [result.derived.get(p) for p in names]
    offsets = np.r_[0, np.cumsum([0 if m is None else len(m) for m in made])].astype(np.int32)
    rows = np.concatenate([m for m in made if m is not None])
    values = _fixed_lists(rows, rows.shape[1])
    mask = pa.array([m is None for m in made])
    return t.append_column(DERIVED, pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask))


def vectors_of(t: pa.Table) -> np.ndarray:
    """(n, d) float32 from a vector column (fixed-size or variable lists of equal length; no nulls)."""
    col = t["vector"].combine_chunks()
    if len(col) == 0:
        d = col.type.list_size if pa.types.is_fixed_size_list(col.type) else 0
        return np.zeros((0, d), np.float32)
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(col), -1).astype(np.float32, copy=False)


def encoder_fingerprint(path: str | Path) -> str | None:
    meta = pq.read_schema(path).metadata or {}
    v = meta.get(b"vecsearch.encoder")
    return v.decode() if v else None


def check_files(files: Sequence[Path], maker: Maker) -> None:
    """Refuse vector files whose dimension or encoder differ from ``maker``'s, naming the file."""
    for f in files:
        try:
            s = pq.read_schema(f)
        except (OSError, pa.ArrowInvalid) as e:
            raise ValueError(f"{f}: not a readable Parquet file ({e})") from None
        if "path" not in s.names or "vector" not in s.names:
            raise ValueError(f"{f}: needs the columns 'path' and 'vector'")
        t = s.field("vector").type
        d = t.list_size if pa.types.is_fixed_size_list(t) else None
        if d is not None and d != maker.dim:
            raise ValueError(f"{f}: vectors have dimension {d}, the encoder makes {maker.dim}")
        fp = encoder_fingerprint(f)
        if fp is not None and fp != maker.fingerprint():
            raise ValueError(
                f"{f}: vectors were made by encoder {fp}, not by this index's encoder {maker.fingerprint()}"
            )


def _good(t: pa.Table) -> pa.Table:
    """The rows that have a vector and no error."""
    import pyarrow.compute as pc  # here, not at the top: 30 ms of every query process

    keep = pc.is_valid(t["vector"]) if "vector" in t.column_names else None
    if "error" in t.column_names:
        err_ok = pc.is_null(t["error"])
        keep = err_ok if keep is None else pc.and_(keep, err_ok)
    return t if keep is None else t.filter(keep)


def batches(
    files: Iterable[Path], columns: list[str] | None = None, ok_only: bool = True
) -> Iterator[pa.Table]:
    """Stream the rows of vector files in bounded batches; by default only rows that have a vector."""
    for f in files:
        # pyarrow's default pre-buffering reads every selected row group ahead and keeps it until the
        # iterator is gone: a 1.5 GB vector file cost 1.5 GB of RAM. One row group at a time, unbuffered.
        pf = pq.ParquetFile(f, pre_buffer=False)
        cols = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
        for g in range(pf.num_row_groups):
            for b in pf.iter_batches(READ_BATCH, row_groups=[g], columns=cols):
                t = pa.Table.from_batches([b])
                yield _good(t) if ok_only else t


def write_parquet(t: pa.Table, path: Path) -> None:
    """Write in small zstd row groups, atomically (see ``files.replacing``)."""
    with replacing(path) as tmp:
        pq.write_table(t, tmp, row_group_size=ROW_GROUP, compression="zstd")


@dataclass
class Inventory:
    """What a pass over the cheap columns of a build's vector files finds."""

    paths: list[str]  # of the rows with a vector, in file order
    skipped: list[tuple[str, str]]  # (path, error) of the rows without
    derived: dict[int, np.ndarray]  # id → vectors derived from that image (calibration copies)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class VectorFiles:
    """The vectors a build indexes: its own chunk files, whose rows carry their ids, or vector files
    from elsewhere, whose good rows get ids ``first_id`` + their position, in file order."""

    files: list[Path]
    first_id: int = 0

    def batches(self, columns: list[str]) -> Iterator[pa.Table]:
        """Tables of the good rows with the given columns and ``id``."""
        next_id = self.first_id
        for t in batches(self.files, [*columns, "id", "error", "vector"]):
            if "id" not in t.column_names:
                t = t.append_column("id", pa.array(np.arange(next_id, next_id + len(t)), pa.int64()))
                next_id += len(t)
            yield t

    def inventory(self) -> Inventory:
        """Paths, failed rows and derived vectors, reading no vector column where an ``error`` column
        tells which rows have one."""
        import pyarrow.compute as pc

        found, skipped, derived = [], [], {}
        for f in self.files:
            names = pq.read_schema(f).names
            cheap = ["path", pathnames.BYTES, "id"] + (["error", DERIVED] if "error" in names else ["vector"])
            for t in batches([f], cheap, ok_only=False):
                good = _good(t)
                found += pathnames.of(good)
                if "error" in t.column_names:
                    bad = t.filter(pc.is_valid(t["error"]))
                    skipped += zip(pathnames.of(bad), bad["error"].to_pylist())
                if DERIVED in good.column_names:
                    derived |= _derived(good)
        return Inventory(found, skipped, derived)

    def sample(self, n_rows: int, n: int, seed: int = 0) -> np.ndarray:
        """A uniform random sample of ``n`` of the ``n_rows`` good vectors, in one streaming pass."""
        want = np.sort(np.random.default_rng(seed).choice(n_rows, min(n, n_rows), replace=False))
        parts, seen = [], 0
        for t in batches(self.files, ["path", "vector", "error"]):
            lo, hi = np.searchsorted(want, [seen, seen + len(t)])
            if hi > lo:
                parts.append(vectors_of(t)[want[lo:hi] - seen])
            seen += len(t)
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _derived(t: pa.Table) -> dict[int, np.ndarray]:
    col = t[DERIVED].combine_chunks()
    ids = t["id"].to_numpy()
    out = {}
    for i in np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False)):
        made = col[int(i)].values
        out[int(ids[i])] = made.flatten().to_numpy().reshape(len(made), -1)
    return out

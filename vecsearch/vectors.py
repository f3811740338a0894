"""The vector table: one Arrow/Parquet format for encoded images, shared by build chunks and `embed`.

Columns: ``path``, ``vector`` (``fixed_size_list<float32>[d]``, null where the image failed),
``error`` (null where it worked), and the file facts the index metadata keeps (bytes, mtime, sha1,
width, height). The schema metadata names the encoder (fingerprint, dimension), so vectors are
never mixed with an index whose encoder made different ones. Tables from other tools only need
``path`` and ``vector``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .encoder import EncodedFiles, Encoder

FACTS = [
    ("bytes", pa.int64()),
    ("mtime", pa.float64()),
    ("sha1", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
]
READ_BATCH = 16_384


def schema(encoder: Encoder) -> pa.Schema:
    d = encoder.dim
    fields = [("path", pa.string()), ("vector", pa.list_(pa.float32(), d)), *FACTS, ("error", pa.string())]
    return pa.schema(
        fields,
        metadata={b"vecsearch.encoder": encoder.fingerprint().encode(), b"vecsearch.dim": str(d).encode()},
    )


def table(result: EncodedFiles, encoder: Encoder) -> pa.Table:
    """The rows of one encoded batch: good files first, then failures with their reason."""
    d = encoder.dim
    n_bad = len(result.failures)
    vectors = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(result.vectors, np.float32).ravel(), pa.float32()), d
    )
    if n_bad:
        vectors = pa.concat_arrays([vectors, pa.nulls(n_bad, pa.list_(pa.float32(), d))])
    pad = [None] * n_bad
    facts = [pa.array([getattr(i, name) for i in result.infos] + pad, typ) for name, typ in FACTS]
    return pa.Table.from_arrays(
        [
            pa.array([i.path for i in result.infos] + [p for p, _ in result.failures], pa.string()),
            vectors,
            *facts,
            pa.array([None] * len(result.infos) + [r for _, r in result.failures], pa.string()),
        ],
        schema=schema(encoder),
    )


def vectors_of(t: pa.Table) -> np.ndarray:
    """(n, d) float32 from a vector column (fixed-size or variable lists of equal length; no nulls)."""
    col = t["vector"].combine_chunks()
    if len(col) == 0:
        d = col.type.list_size if pa.types.is_fixed_size_list(col.type) else 0
        return np.zeros((0, d), np.float32)
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(col), -1).astype(np.float32, copy=False)


def encoder_fingerprint(path: str | os.PathLike) -> str | None:
    meta = pq.read_schema(path).metadata or {}
    v = meta.get(b"vecsearch.encoder")
    return v.decode() if v else None


def check_files(files: Sequence[Path], encoder: Encoder) -> None:
    """Refuse vector files whose dimension or encoder differ from ``encoder``'s, naming the file."""
    for f in files:
        try:
            s = pq.read_schema(f)
        except (OSError, pa.ArrowInvalid) as e:
            raise ValueError(f"{f}: not a readable Parquet file ({e})") from None
        if "path" not in s.names or "vector" not in s.names:
            raise ValueError(f"{f}: needs the columns 'path' and 'vector'")
        t = s.field("vector").type
        d = t.list_size if pa.types.is_fixed_size_list(t) else None
        if d is not None and d != encoder.dim:
            raise ValueError(f"{f}: vectors have dimension {d}, the encoder makes {encoder.dim}")
        fp = encoder_fingerprint(f)
        if fp is not None and fp != encoder.fingerprint():
            raise ValueError(
                f"{f}: vectors were made by encoder {fp}, not by this index's encoder {encoder.fingerprint()}"
            )


def batches(
    files: Iterable[Path], columns: list[str] | None = None, ok_only: bool = True
) -> Iterator[pa.Table]:
    """Stream the rows of vector files in bounded batches; by default only rows that have a vector."""
    for f in files:
        # pyarrow's default pre-buffering reads every selected row group ahead and keeps it until the
        # iterator is gone: a 1.5 GB vector file cost 1.5 GB of RAM. One row group at a time, unbuffered.
        pf = pq.ParquetFile(f, pre_buffer=False)
        cols = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
        for b in (
            b
            for g in range(pf.num_row_groups)
            for b in pf.iter_batches(READ_BATCH, row_groups=[g], columns=cols)
        ):
            t = pa.Table.from_batches([b])
            if ok_only:
                keep = pc.is_valid(t["vector"]) if "vector" in t.column_names else None
                if "error" in t.column_names:
                    err_ok = pc.is_null(t["error"])
                    keep = err_ok if keep is None else pc.and_(keep, err_ok)
                if keep is not None:
                    t = t.filter(keep)
            yield t


def count_rows(files: Iterable[Path]) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def write(t: pa.Table, path: Path) -> None:
    from .store import write_parquet

    write_parquet(t, path)

"""Vectors for other people's pipelines: encode files into an Arrow table or a Parquet file.

The table is the one ``vectors.py`` defines (path, vector, error, file facts), which
``vecsearch build --vectors`` and ``add --vectors`` take back, so a cluster job can encode and one
machine can index. Files are written in batches under a temporary name and renamed when complete:
a killed job never leaves a truncated file under the requested name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import executors
from . import vectors as vt
from .builder import _as_list, _scan_some, progress, scan, train_encoder
from .encoder import Encoder, EncoderConfig


def _encoder(encoder: Encoder | str | os.PathLike) -> Encoder:
    return encoder if isinstance(encoder, Encoder) else Encoder.load(encoder)


def embed(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    encoder: Encoder | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    workers: int | None = 0,
    scheduler: str | None = None,
    batch_size: int = 64,
    quiet: bool = True,
) -> pa.Table | Path:
    """Encode the images of ``sources`` with ``encoder`` (an Encoder, encoder file or index directory).

    Returns the vector table, or with ``out`` writes it as Parquet in batches (bounded memory) and
    returns the path. Rows keep scan order; unreadable files get a null vector and an ``error``.
    """
    enc = _encoder(encoder)
    paths, problems = scan(_as_list(sources), quiet)
    tasks = ((i, list(paths[s : s + batch_size])) for i, s in enumerate(range(0, len(paths), batch_size)))
    results = executors.encode(enc, tasks, workers, scheduler)
    schema = vt.schema(enc)
    extra = pa.table({"path": [p for p, _ in problems], "error": [r for _, r in problems]})
    extra = pa.Table.from_arrays(
        [
            extra["path"]
            if n == "path"
            else extra["error"]
            if n == "error"
            else pa.nulls(len(extra), schema.field(n).type)
            for n in schema.names
        ],
        schema=schema,
    )
    with progress(len(paths), "embed", quiet) as bar:
        if out is None:
            parts = {}
            for number, r in results:
                parts[number] = vt.table(r, enc)
                bar.update(len(r.infos) + len(r.failures))
            return pa.concat_tables([parts[k] for k in sorted(parts)] + [extra])
        out = Path(out).expanduser()
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                pending, following = {}, 0
                for number, r in results:  # write in scan order; at most the in-flight batches wait
                    pending[number] = vt.table(r, enc)
                    bar.update(len(r.infos) + len(r.failures))
                    while following in pending:
                        writer.write_table(pending.pop(following))
                        following += 1
                if len(extra):
                    writer.write_table(extra)
            os.replace(tmp, out)
        finally:
            if tmp.exists():
                tmp.unlink()
        return out


def train(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    config: EncoderConfig | None = None,
    quiet: bool = True,
) -> Encoder:
    """Train an encoder alone on a sample of the images of ``sources``; save it to ``out`` if given.

    Several indexes and batch jobs that use the same encoder make comparable vectors.
    """
    paths, _ = _scan_some(sources, quiet)
    enc = train_encoder(paths, config or EncoderConfig(), quiet, workers=None)
    if out is not None:
        enc.save(out)
    return enc


def vectors_from(table: pa.Table) -> np.ndarray:
    """The (n, d) float32 matrix of a vector table's good rows."""
    ok = table.filter(pa.compute.is_valid(table["vector"]))
    return vt.vectors_of(ok)

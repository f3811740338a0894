"""Vectors for other people's pipelines: encode files into an Arrow table or a Parquet file.

The table is the one ``vectors.py`` defines (path, vector, error, file facts), which
``vecsearch build --vectors`` and ``add --vectors`` take back, so a cluster job can encode and one
machine can index. Files are written in batches under a temporary name and renamed when complete:
a killed job never leaves a truncated file under the requested name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .encoder import Encoder, EncoderConfig
from .encoding import encode_batches, train_encoder
from .files import replacing
from .sources import Sources, scan_images
from .stages import stage
from .vectors import schema, table, vectors_of


def embed(
    sources: Sources,
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
    Sources that hold no image at all are refused (``NoImagesError``), as a build refuses them.
    """
    enc = encoder if isinstance(encoder, Encoder) else Encoder.load(encoder)
    paths, problems = scan_images(sources, quiet)
    starts = range(0, len(paths), batch_size)
    tasks = ((i, list(paths[s : s + batch_size])) for i, s in enumerate(starts))
    with stage("embed", len(paths), quiet=quiet) as st:
        parts = _in_order(enc, encode_batches(enc, tasks, workers, scheduler), st)
        unread = _unread(problems, schema(enc))
        if out is None:
            return pa.concat_tables([*parts, unread])
        out = Path(out).expanduser()
        with replacing(out) as tmp, pq.ParquetWriter(tmp, schema(enc), compression="zstd") as writer:
            for part in parts:
                writer.write_table(part)
            if len(unread):
                writer.write_table(unread)
        return out


def _in_order(enc: Encoder, results, st) -> Iterator[pa.Table]:
    """The batches' tables in scan order, as they finish; at most the batches in flight wait."""
    pending, following = {}, 0
    for number, r in results:
        pending[number] = table(r, enc)
        st.update(len(r.infos) + len(r.failures))
        while following in pending:
            yield pending.pop(following)
            following += 1


def _unread(problems: list[tuple[str, str]], s: pa.Schema) -> pa.Table:
    """Rows for the sources the scan could not read: a path and an error, nothing else."""
    columns = {"path": [p for p, _ in problems], "error": [r for _, r in problems]}
    arrays = [
        pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(len(problems), f.type) for f in s
    ]
    return pa.Table.from_arrays(arrays, schema=s)


def train(
    sources: Sources,
    out: str | os.PathLike | None = None,
    *,
    config: EncoderConfig | None = None,
    quiet: bool = True,
) -> Encoder:
    """Train an encoder alone on a sample of the images of ``sources``; save it to ``out`` if given.

    Several indexes and batch jobs that use the same encoder make comparable vectors.
    """
    paths, _ = scan_images(sources, quiet)
    enc = train_encoder(paths, config or EncoderConfig(), quiet, workers=None)
    if out is not None:
        enc.save(out)
    return enc


def vectors_from(table: pa.Table) -> np.ndarray:
    """The (n, d) float32 matrix of a vector table's good rows."""
    import pyarrow.compute as pc

    return vectors_of(table.filter(pc.is_valid(table["vector"])))

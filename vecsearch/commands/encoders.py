"""The commands for pipelines that encode elsewhere: train an encoder, embed images with one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ..arguments import UsageError, Value
from .common import OK, Count, File, Workers, say, setup_logging, writable


def embed(
    *sources: Annotated[str, Value("SOURCE")],
    index: Annotated[str | None, Value("DIR", words="a folder")] = None,
    encoder: File = None,
    out: Annotated[str, Value("FILE", words="a file name")] = "vectors.parquet",
    workers: Workers = None,
    scheduler: Annotated[str | None, Value("ADDRESS", words="a Dask scheduler address")] = None,
    batch_size: Count = 64,
    quiet: bool = False,
) -> int:
    """Encode images into a Parquet file of vectors (path, vector, error, file facts) for other tools.

    The file is readable as it is by pyarrow, pandas, DuckDB, Polars and Spark, and by vecsearch
    build --vectors and add --vectors. It is written under a temporary name and renamed when
    complete.

    Args:
        sources: folders, files, globs or .txt lists of images
        index: use this index's encoder (or give --encoder)
        encoder: an encoder file or folder from vecsearch train
        out: the Parquet file to write
        workers: processes that encode images; 0 encodes in this process; default: one per core
        scheduler: encode on a Dask cluster instead, e.g. tcp://host:8786
        batch_size: images per batch (bounds memory)
        quiet: no progress or summary

    Examples:
        vecsearch embed ~/photos --encoder encoders/photos --out vectors.parquet
    """
    from ..embedding import embed as run_embed

    if bool(index) == bool(encoder):
        raise UsageError("give exactly one of --index DIR or --encoder FILE")
    if not sources:
        raise UsageError("give at least one SOURCE of images")
    target = writable("--out", out)
    setup_logging(quiet)
    path = run_embed(
        list(sources),
        index or encoder,
        target,
        workers=workers,
        scheduler=scheduler,
        batch_size=batch_size,
        quiet=quiet,
    )
    if not quiet:
        import pyarrow.parquet as pq

        t = pq.read_table(path, columns=["error"])
        bad = t["error"].null_count
        say(f"{path}: {bad} vectors, {len(t) - bad} files skipped (see the error column)")
    return OK


def train(
    *sources: Annotated[str, Value("SOURCE")],
    out: Annotated[str, Value("PATH", words="a folder or .npz file")] = "encoder",
    quiet: bool = False,
) -> int:
    """Train an encoder alone on a sample of images, to share between indexes and batch jobs.

    Args:
        sources: folders, files, globs or .txt lists; up to 1000 of them are sampled
        out: a folder (gets encoder.npz) or a .npz file
        quiet: no progress

    Examples:
        vecsearch train ~/photos --out encoders/photos
    """
    from ..embedding import train as run_train

    if not sources:
        raise UsageError("give at least one SOURCE of sample images")
    target = Path(out).expanduser()
    if target.suffix == ".npz":
        writable("--out", out)
    elif target.exists() and not target.is_dir():
        raise UsageError(f"--out {out}: is a file; give a folder or a .npz file name")
    elif not target.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {target.parent} does not exist")
    setup_logging(quiet)
    enc = run_train(list(sources), out, quiet=quiet)
    if not quiet:
        say(f"{out}: encoder {enc.fingerprint()}, {enc.dim} dimensions")
    return OK

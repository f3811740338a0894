"""The commands that change an index: build, add, remove, calibrate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ..arguments import UsageError, Value
from .common import (
    DEFAULT_INDEX,
    NOTHING,
    OK,
    Count,
    Dir,
    File,
    Size,
    Workers,
    index_target,
    say,
    setup_logging,
)


def build(
    *sources: Annotated[str, Value("SOURCE")],
    index: Dir = DEFAULT_INDEX,
    vectors: File = None,
    encoder: File = None,
    retrain: bool = False,
    keep_encoder: bool = False,
    workers: Workers = None,
    scheduler: Annotated[str | None, Value("ADDRESS", words="a Dask scheduler address")] = None,
    batch_size: Count = 64,
    memory_budget: Size = None,
    quiet: bool = False,
) -> int:
    """Index images: folders (recursive), files, glob patterns, or .txt files listing paths.

    Resumes where it stopped if killed and run again with the same sources. Bad files are skipped
    and listed (see vecsearch info --skipped). An existing index is replaced by a new version; its
    encoder is kept unless --retrain, or unless it was trained on far fewer images than the
    collection now has (--keep-encoder keeps it even then).

    Args:
        sources: where the images are
        index: the index directory to create or replace
        vectors: index precomputed vectors instead: a Parquet file or folder from vecsearch embed
            (needs --encoder)
        encoder: use this trained encoder (from vecsearch train, or another index's directory)
        retrain: train a new encoder on this collection even if the index already has one
        keep_encoder: keep the index's encoder even if it was trained on far fewer images
        workers: processes that encode images; 0 encodes in this process; default: one per core
        scheduler: encode on a Dask cluster instead, e.g. tcp://host:8786
        batch_size: images per task; each finished batch is kept, so a restart loses at most these
        memory_budget: memory the index may take; above it vectors are compressed (SQ8, or PQ
            re-ranked from a float16 copy of the vectors on disk)
        quiet: no progress, stage logs or summary

    Examples:
        vecsearch build ~/photos --index indexes/photos
        vecsearch build photos/ more.txt 'scans/*.png' --index indexes/photos --workers 4
        vecsearch build --vectors vectors.parquet --encoder encoders/photos --index indexes/photos
    """
    from ..pipeline import build as run_build

    if not sources and not vectors:
        raise UsageError(
            "give at least one SOURCE (a folder, file, glob or .txt list of image paths) or --vectors FILE"
        )
    if retrain and keep_encoder:
        raise UsageError("--retrain and --keep-encoder contradict each other: give one of them")
    index_target(index)
    setup_logging(quiet)
    result = run_build(
        list(sources),
        index,
        vectors=[vectors] if vectors else None,
        encoder=encoder,
        retrain=retrain,
        keep_encoder=keep_encoder,
        workers=workers,
        scheduler=scheduler,
        batch_size=batch_size,
        memory_budget=memory_budget,
        quiet=quiet,
    )
    if not quiet:
        say(f"{result.path}: {result.last_build.summary()}")
    return OK


def add(
    *sources: Annotated[str, Value("SOURCE")],
    index: Dir = DEFAULT_INDEX,
    vectors: File = None,
    workers: Workers = None,
    scheduler: Annotated[str | None, Value("ADDRESS", words="a Dask scheduler address")] = None,
    batch_size: Count = 64,
    quiet: bool = False,
) -> int:
    """Add new and changed images to an index (unchanged files are not encoded again).

    A file whose size or modification time changed is encoded again and replaces its entry. An add
    that finds nothing new makes no new version.

    Args:
        sources: folders, files, globs or .txt lists; files already indexed and unchanged are skipped
        index: the index directory
        vectors: add precomputed vectors instead (Parquet from vecsearch embed with this index's encoder)
        workers: processes that encode images; 0 encodes in this process; default: one per core
        scheduler: encode on a Dask cluster instead, e.g. tcp://host:8786
        batch_size: images per task
        quiet: no progress, stage logs or summary

    Examples:
        vecsearch add ~/photos --index indexes/photos
        vecsearch add --vectors more.parquet --index indexes/photos
    """
    from ..pipeline import add as run_add
    from ..pipeline import n_images

    if not sources and not vectors:
        raise UsageError("give at least one SOURCE or --vectors FILE")
    index_target(index)
    setup_logging(quiet)
    result = run_add(
        list(sources),
        index,
        vectors=[vectors] if vectors else None,
        workers=workers,
        scheduler=scheduler,
        batch_size=batch_size,
        quiet=quiet,
    )
    report = result.last_build
    if quiet:
        return OK
    skipped = f", skipped {len(report.skipped)} ({report.reasons()})" if report.skipped else ""
    if not report.committed:
        say(f"{result.path}: nothing new{skipped}: {n_images(len(result))}, no new version")
        return OK
    new = report.indexed - report.updated
    say(
        f"{result.path}: added {n_images(new)}, updated {report.updated}{skipped} in {report.seconds:.1f}s; "
        f"now {n_images(len(result))} (version {result.version.number})"
    )
    return OK


def remove(
    *paths: Annotated[str, Value("PATH")],
    index: Dir = DEFAULT_INDEX,
    missing: bool = False,
    quiet: bool = False,
) -> int:
    """Remove images from an index by path; a folder removes everything under it.

    Args:
        paths: indexed files or folders to remove (they need not exist any more)
        index: the index directory
        missing: also remove every indexed file that no longer exists
        quiet: no summary

    Exit status:
        0  images were removed (one new version)
        1  nothing matched: no indexed image is at or under the paths given (no new version)
        2  a bad argument, or no index there

    Examples:
        vecsearch remove ~/photos/old --index indexes/photos
        vecsearch remove --missing --index indexes/photos
    """
    from ..pipeline import n_images
    from ..pipeline import remove as run_remove

    if not paths and not missing:
        raise UsageError("give the PATHs to remove, or --missing to drop files that no longer exist")
    index_target(index)
    setup_logging(quiet)
    n = run_remove(list(paths), index, missing=missing, quiet=quiet)
    if n == 0:
        where = ", ".join(paths) if paths else "the indexed files"
        say(
            f"{index}: nothing removed: no indexed image is at or under {where}"
            if paths
            else f"{index}: nothing removed: every indexed file still exists"
        )
        return NOTHING
    if not quiet:
        say(f"{index}: removed {n_images(n)}")
    return OK


def calibrate(
    index: Dir = DEFAULT_INDEX,
    labels: Annotated[str | None, Value("FILE", words="a file name")] = None,
    quiet: bool = False,
) -> int:
    """Refit the index's percentages on your own labels, as a new version of the index.

    Out of the box, a percentage says how likely a hit is the same picture as the query (after
    everyday edits). If you mean something else by "the same" (the same scene, the same product,
    the same person), label some indexed images and the percentage learns it: a CSV with the
    header path,group (images of one group are the same thing, and a group lists all of them:
    an indexed image left out is in none; paths relative to the file's folder or absolute) or
    a,b,same (pairs, same = 1 or 0). The labels' curve serves every hit, a query's only near one
    too. A fifth of the labels is kept out of the fit to measure it; vecsearch info shows the
    result. Labels naming images that are not in the index, of one kind
    only, or too few (10 alike and 10 not among the labelled images' top hits, at least) are
    refused, and nothing changes.

    Args:
        index: the index directory
        labels: the labels file (path,group or a,b,same)
        quiet: no summary

    Examples:
        vecsearch calibrate --index indexes/products --labels products.csv
        vecsearch info --index indexes/products
    """
    from ..pipeline import recalibrate

    if not labels:
        raise UsageError("give the labels: --labels FILE (a CSV with path,group or a,b,same)")
    if not Path(labels).expanduser().is_file():
        raise UsageError(f"--labels {labels}: no such file")
    index_target(index)
    setup_logging(quiet)
    result = recalibrate(index, labels, quiet=quiet)
    if not quiet:
        held = result.calibration.fitted_on.get("held_out", {})
        fitted = result.calibration.fitted_on
        measured = (
            f"; held-out labels: ECE {held['ECE']:.3f} on {held['pairs']} pairs" if "ECE" in held else ""
        )
        say(
            f"{result.path}: calibrated on {fitted['positives']} pairs alike and {fitted['negatives']} not"
            f"{measured} (version {result.version.number})"
        )
    return OK

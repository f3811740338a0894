"""The ``vecsearch`` command (python-fire): thin wrappers that format what the Python API returns.

Results go to stdout (table, JSON lines or CSV); progress bars and messages go to stderr. Errors a
user can fix (a missing index, an unreadable query, a bad argument) print one line and exit 2.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_INDEX = "indexes/default"
FORMATS = ("table", "json", "csv")


class UsageError(ValueError):
    pass


def _paths(sources: Iterable[Any]) -> list[str]:
    # fire turns arguments that look like numbers or lists into Python values: paths are text.
    out: list[str] = []
    for s in sources:
        out += [str(x) for x in s] if isinstance(s, (list, tuple)) else [str(s)]
    return out


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")


def _quiet_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)


def build(
    *sources: str,
    index: str = DEFAULT_INDEX,
    vectors: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    batch_size: int = 64,
    memory_budget: str | None = None,
    encoder: str | None = None,
    retrain: bool = False,
    quiet: bool = False,
) -> None:
    """Index images: folders (recursive), files, glob patterns, or .txt files listing paths.

    Resumes where it stopped if killed and run again with the same sources. Bad files are skipped
    and listed (see `vecsearch info --skipped`). An existing index is replaced by a new version.

    Args:
        sources: where the images are.
        index: the index directory to create or replace (default indexes/default).
        vectors: index precomputed vectors instead (a Parquet file from `vecsearch embed`; needs --encoder).
        workers: processes that encode images; 0 = in this process; default: one per core.
        scheduler: address of a Dask scheduler (tcp://host:8786) to encode on a cluster instead.
        batch_size: images per task; each finished batch is saved, so a restart loses at most these.
        memory_budget: memory the index may take, like 4G; above it vectors are compressed (SQ8, or
            PQ re-ranked from a float16 copy of the vectors on disk).
        encoder: use this trained encoder (from `vecsearch train`, or another index's directory).
        retrain: train a new encoder on this collection even if the index already has one.
        quiet: no progress bars or summary.
    """
    from .pipeline import build as run_build

    _quiet_logging(quiet)
    srcs = _paths(sources)
    if not srcs and not vectors:
        raise UsageError(
            "give at least one SOURCE (a folder, file, glob or .txt list of image paths) or --vectors FILE"
        )
    result = run_build(
        srcs,
        index,
        vectors=_paths([vectors]) if vectors else None,
        encoder=encoder,
        retrain=retrain,
        workers=workers,
        scheduler=scheduler,
        batch_size=int(batch_size),
        memory_budget=memory_budget,
        quiet=quiet,
    )
    if not quiet:
        print(f"{result.path}: {result.last_build.summary()}", file=sys.stderr)


def add(
    *sources: str,
    index: str = DEFAULT_INDEX,
    vectors: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    batch_size: int = 64,
    quiet: bool = False,
) -> None:
    """Add new and changed images to an index (unchanged files are not encoded again).

    Args:
        sources: folders, files, globs or .txt lists; files already indexed and unchanged are skipped.
        index: the index directory (default indexes/default).
        vectors: add precomputed vectors instead (Parquet from `vecsearch embed` with this index's encoder).
        workers: processes that encode images; 0 = in this process; default: one per core.
        scheduler: address of a Dask scheduler to encode on a cluster.
        batch_size: images per task.
        quiet: no progress bars or summary.
    """
    from .pipeline import add as run_add

    _quiet_logging(quiet)
    srcs = _paths(sources)
    if not srcs and not vectors:
        raise UsageError("give at least one SOURCE or --vectors FILE")
    result = run_add(
        srcs,
        index,
        vectors=_paths([vectors]) if vectors else None,
        workers=workers,
        scheduler=scheduler,
        batch_size=int(batch_size),
        quiet=quiet,
    )
    if not quiet:
        print(
            f"{result.path}: added {result.last_build.indexed} images, now {len(result)}; "
            f"{result.last_build.summary()}",
            file=sys.stderr,
        )


def remove(*paths: str, index: str = DEFAULT_INDEX, missing: bool = False, quiet: bool = False) -> None:
    """Remove images from an index by path; a folder removes everything under it.

    Args:
        paths: indexed files or folders to remove (they need not exist any more).
        index: the index directory (default indexes/default).
        missing: also remove every indexed file that no longer exists.
        quiet: no summary.
    """
    from .pipeline import remove as run_remove

    n = run_remove(_paths(paths), index, missing=missing)
    if not quiet:
        print(f"{index}: removed {n} images", file=sys.stderr)


def embed(
    *sources: str,
    index: str | None = None,
    encoder: str | None = None,
    out: str = "vectors.parquet",
    workers: int | None = None,
    scheduler: str | None = None,
    batch_size: int = 64,
    quiet: bool = False,
) -> None:
    """Encode images into a Parquet file of vectors (path, vector, error, file facts) for other tools.

    The file is readable as it is by pyarrow, pandas, DuckDB, Polars and Spark, and by
    `vecsearch build --vectors` / `add --vectors`. It is written under a temporary name and renamed
    when complete.

    Args:
        sources: folders, files, globs or .txt lists of images.
        index: use this index's encoder (or give --encoder).
        encoder: an encoder file or directory from `vecsearch train`.
        out: the Parquet file to write (default vectors.parquet).
        workers: processes that encode images; 0 = in this process; default: one per core.
        scheduler: address of a Dask scheduler to encode on a cluster.
        batch_size: images per batch (bounds memory).
        quiet: no progress bar or summary.
    """
    from .embedding import embed as run_embed

    _quiet_logging(quiet)
    if bool(index) == bool(encoder):
        raise UsageError("give exactly one of --index DIR or --encoder FILE")
    srcs = _paths(sources)
    if not srcs:
        raise UsageError("give at least one SOURCE of images")
    path = run_embed(
        srcs,
        index or encoder,
        out,
        workers=workers,
        scheduler=scheduler,
        batch_size=int(batch_size),
        quiet=quiet,
    )
    if not quiet:
        import pyarrow.parquet as pq

        t = pq.read_table(path, columns=["error"])
        bad = t["error"].null_count
        print(f"{path}: {bad} vectors, {len(t) - bad} files skipped (see the error column)", file=sys.stderr)


def train(*sources: str, out: str = "encoder", quiet: bool = False) -> None:
    """Train an encoder alone on a sample of images, to share between indexes and batch jobs.

    Args:
        sources: folders, files, globs or .txt lists; up to 1000 of them are sampled.
        out: a directory (gets encoder.npz) or a .npz file (default ./encoder).
        quiet: no progress bars.
    """
    from .embedding import train as run_train

    _quiet_logging(quiet)
    srcs = _paths(sources)
    if not srcs:
        raise UsageError("give at least one SOURCE of sample images")
    enc = run_train(srcs, out, quiet=quiet)
    if not quiet:
        print(f"{out}: encoder {enc.fingerprint()}, {enc.dim} dimensions", file=sys.stderr)


def _shown(relative_to: str | None):
    """How paths are printed: as stored (absolute), or relative to a folder the user names."""
    if relative_to is None:
        return lambda p: p
    base = os.path.abspath(os.path.expanduser(str(relative_to)))
    return lambda p: os.path.relpath(p, base)


def query(
    *images: str,
    index: str = DEFAULT_INDEX,
    k: int = 10,
    min_similarity: float = 0.0,
    format: str = "table",
    html: str | None = None,
    relative_to: str | None = None,
) -> None:
    """Find the images most like each query image, best first, with calibrated similarity %.

    Args:
        images: query images: files, folders (every image inside), globs or .txt lists.
        index: the index directory (default indexes/default).
        k: how many hits per query at most.
        min_similarity: only hits at or above this percentage (0-100).
        format: table (default), json (one object per hit per line) or csv.
        html: also write a self-contained page of thumbnails to this file.
        relative_to: print paths relative to this folder (default: absolute, as indexed).
    """
    from .search import open_index
    from .sources import iter_image_paths

    _check_format(format)
    given = _paths(images)
    if not given:
        raise UsageError("give at least one query IMAGE (a file, folder, glob or .txt list)")
    problems: list = []
    queries = list(iter_image_paths(given, problems))
    if problems:
        raise UsageError(
            f"{problems[0].path}: query image not found"
            if "no such" in problems[0].reason
            else f"{problems[0].path}: {problems[0].reason}"
        )
    if not queries:
        raise UsageError(f"no query images in {', '.join(given)}")
    idx = open_index(index)
    results = idx.search_many(queries, k=int(k), min_similarity=float(min_similarity))
    shown = _shown(relative_to)
    rows = [
        {
            "query": shown(q),
            "rank": h.rank,
            "similarity": round(h.similarity, 1),
            "distance": round(h.distance, 4),
            "id": h.id,
            "path": shown(h.path),
        }
        for q, hits in zip(queries, results)
        for h in hits
    ]
    _emit(rows, format, ["query", "rank", "similarity", "distance", "id", "path"], group_by="query")
    if html:
        from . import report

        out = report.write(html, report.results_page(list(zip(queries, results)), shown))
        print(f"wrote {out}", file=sys.stderr)


def dedup(
    index: str = DEFAULT_INDEX,
    min_similarity: float = 90.0,
    out: str | None = None,
    html: str | None = None,
    format: str = "csv",
    relative_to: str | None = None,
    quiet: bool = False,
) -> None:
    """Find every group of near-duplicates in an index, with a suggested keeper per group.

    Keeper: the largest resolution, then the largest file. Every other member of a group is at or
    above min_similarity of the keeper itself (A~B and B~C do not put C with A unless A~C).

    Args:
        index: the index directory (default indexes/default).
        min_similarity: two images are duplicates at or above this percentage (default 90).
        out: write the groups to this file (default: stdout).
        html: also write a page of the groups as thumbnails.
        format: csv (default), json or table.
        relative_to: print paths relative to this folder.
        quiet: no progress bar.
    """
    from .dedup import find_groups
    from .search import open_index
    from .stages import stage

    _check_format(format)
    idx = open_index(index)
    with stage("dedup", len(idx), quiet=quiet) as st:
        groups = find_groups(idx, float(min_similarity), st.update)
    shown = _shown(relative_to)
    rows = [
        dict(group=n, **{**m.as_dict(), "path": shown(m.path), "similarity": round(m.similarity, 1)})
        for n, g in enumerate(groups, 1)
        for m in g
    ]
    columns = ["group", "path", "keep", "similarity", "width", "height", "bytes", "id"]
    if out:
        from .files import write_bytes

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            _emit(rows, format, columns)
        write_bytes(Path(out).expanduser(), buf.getvalue().encode("utf-8", "surrogateescape"))
    else:
        _emit(rows, format, columns)
    if html:
        from . import report

        report.write(html, report.groups_page([[m.as_dict() for m in g] for g in groups], shown))
    if not quiet:
        print(
            f"{len(groups)} groups, {sum(len(g) for g in groups)} images, "
            f"{sum(len(g) - 1 for g in groups)} could go",
            file=sys.stderr,
        )


def info(index: str = DEFAULT_INDEX, skipped: bool = False, format: str = "table") -> None:
    """Describe an index: size, encoder, index type and tuned recall, calibration, skipped files.

    Args:
        index: the index directory (default indexes/default).
        skipped: list the files that could not be indexed, with the reason for each.
        format: table (default), json or csv (csv only with --skipped).
    """
    from .search import open_index

    _check_format(format)
    idx = open_index(index)
    if skipped:
        t = idx.skipped()
        _emit(
            [{"path": p, "reason": r} for p, r in zip(t["path"].to_pylist(), t["reason"].to_pylist())],
            format,
            ["path", "reason"],
        )
        return
    data = idx.info()
    if format == "json":
        print(json.dumps(data))
        return
    ix, enc = data["index"], data["encoder"]
    recall = ix.get("recall_at_10")
    lines = [
        ("index", data["path"]),
        ("version", data["version"]),
        ("images", data["images"]),
        ("skipped", f"{data['skipped']} (list them with --skipped)" if data["skipped"] else 0),
        ("dimension", data["dimension"]),
        (
            "faiss index",
            f"{ix.get('factory')} (exact)"
            if ix.get("nlist") == 1
            else f"{ix.get('factory')}, nprobe {ix.get('nprobe')}"
            + (f", re-ranked: {ix['rerank']}x candidates by exact distance" if ix.get("rerank") else ""),
        ),
        ("recall@10", f"{recall:.3f} vs exact search" if recall is not None else "not measured"),
        ("encoder", f"{enc.get('fingerprint')}: {json.dumps(enc.get('config'))}"),
        (
            "calibration",
            f"{data['calibration'].get('positives')} edited copies vs "
            f"{data['calibration'].get('negatives')} non-matching hits",
        ),
        ("committed", data["committed_at"]),
    ]
    if data["advice"]:
        lines.append(("advice", data["advice"]))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")


def demo(index: str = "indexes/demo", quiet: bool = False) -> None:
    """Build an index of the example photos shipped with vecsearch and query it with an edited copy.

    Args:
        index: where to build the demo index (default indexes/demo).
        quiet: no progress bars.
    """
    import tempfile

    import cv2
    import numpy as np

    from .edits import random_edit
    from .encoder import example_images

    photos = example_images()
    build(*photos, index=index, workers=0, quiet=quiet)
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "chelsea-edited.jpg")
        original = next(p for p in photos if p.endswith("chelsea.jpg"))
        cv2.imwrite(copy, random_edit(cv2.imread(original), np.random.default_rng(7), strength=0.5))
        print(f"query: an edited copy (crop, rescale, colour, JPEG) of {original}", file=sys.stderr)
        query(copy, index=index, k=5)


def check(index: str = DEFAULT_INDEX) -> None:
    """Verify an index: file checksums against the manifest, counts and ids across FAISS and metadata.

    Prints "ok" and exits 0, or one line per problem (naming the file) and exits 1.

    Args:
        index: the index directory (default indexes/default).
    """
    from .check import check as run_check

    problems = run_check(index)
    for p in problems:
        print(p)
    if problems:
        raise SystemExit(1)
    print(f"{index}: ok")


def _emit(rows: list[dict], format: str, columns: list[str], group_by: str | None = None) -> None:
    out = sys.stdout
    if format == "json":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    elif format == "csv":
        w = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        shown = [c for c in columns if c != group_by]
        current = first = object()
        table = [[str(r[c]) for c in shown] for r in rows]
        widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(shown)]
        header = "  ".join(c.ljust(w) for c, w in zip(shown, widths)).rstrip()
        if not group_by:
            print(header, file=out)
        for r, t in zip(rows, table):
            if group_by and r[group_by] != current:
                print(f"{'' if current is first else chr(10)}{group_by}: {r[group_by]}\n{header}", file=out)
                current = r[group_by]
            print("  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip(), file=out)
        if not rows:
            print("(no results)", file=sys.stderr)


COMMANDS = {
    "build": build,
    "add": add,
    "remove": remove,
    "query": query,
    "dedup": dedup,
    "info": info,
    "check": check,
    "embed": embed,
    "train": train,
    "demo": demo,
}


def main(argv: list[str] | None = None) -> int:
    import fire

    from .images import ImageError
    from .manifest import IndexDirError

    args = sys.argv[1:] if argv is None else argv
    # fire writes help to stderr; a user who asks for help wants it on stdout (to page or grep it).
    help_out = (
        contextlib.redirect_stderr(sys.stdout) if {"--help", "-h"} & set(args) else contextlib.nullcontext()
    )
    try:
        with help_out:
            fire.Fire(COMMANDS, command=args, name="vecsearch")
    except (
        UsageError,
        IndexDirError,
        ImageError,
        ValueError,
        FileNotFoundError,
        PermissionError,
        RuntimeError,
    ) as e:
        print(f"vecsearch: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vecsearch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vecsearch query … | head`: the reader has gone, so be quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())

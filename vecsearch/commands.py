"""The commands of ``vecsearch``: thin functions over the Python API, with the command line's
checks, outputs and exit statuses.

Each signature is read by ``arguments.py`` (types, ranges, metavars) and each docstring is the
command's help page. A command returns its exit status. Results go to stdout, everything else to
stderr. Heavy modules are imported inside the commands, so ``--help`` and a query load only what
they need.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

from .arguments import UsageError, Value
from .output import hit_fields, member_fields, relative, render, write_stdout
from .sizes import parse_bytes

DEFAULT_INDEX = "indexes/default"

Dir = Annotated[str, Value("DIR", words="a folder")]
File = Annotated[str | None, Value("FILE", words="a file name")]
Count = Annotated[int, Value("N", low=1)]
Workers = Annotated[int | None, Value("N", low=0)]
Percent = Annotated[float, Value("PCT", low=0, high=100)]
Format = Literal["table", "json", "csv"]
Size = Annotated[str | None, Value("SIZE", parse=parse_bytes, words="a size like 512M or 4G")]

#: Exit statuses shared by the commands (README, "Exit status").
OK, NOTHING, ERROR, SOME_FAILED = 0, 1, 2, 3

log = logging.getLogger("vecsearch")


def say(message: str) -> None:
    print(message, file=sys.stderr)


def setup_logging(quiet: bool) -> None:
    """Stage logs on stderr at INFO (their messages only), or warnings only with ``quiet``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def writable(flag: str, path: str) -> Path:
    """Refuse, before any work, an output the command could not write at the end."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    folder = p.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: cannot write in {folder} (permission denied)")
    return p


def index_target(index: str) -> Path:
    """Refuse an index path that is a file, before anything is read or written."""
    p = Path(index).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"--index {index}: is a file, not an index directory")
    return p


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
    from .pipeline import build as run_build

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
    from .pipeline import add as run_add
    from .pipeline import n_images

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
    from .pipeline import n_images
    from .pipeline import remove as run_remove

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


def query(
    *images: Annotated[str, Value("IMAGE")],
    index: Dir = DEFAULT_INDEX,
    k: Count = 10,
    min_similarity: Percent = 0.0,
    format: Format = "table",
    html: File = None,
    relative_to: Annotated[str | None, Value("DIR", words="a folder")] = None,
    verify: bool = False,
) -> int:
    """Find the images most like each query image, best first, with calibrated similarity %.

    A hit's percentage is the estimated probability that it is the same picture as the query (the
    same photo after everyday edits: resized, cropped, re-compressed, recoloured, mirrored, grey);
    vecsearch calibrate teaches it another meaning. Every query appears in the output: one that
    has no hits gets a single row with empty hit fields (null in JSON). A query that cannot be
    read is reported on stderr and the others are answered. A query is also searched as its mirror
    image, and one without colour by its texture and keypoints alone. With --verify the top 20
    candidates are checked keypoint by keypoint and the verified copies come first (an inliers
    column; slower, and the indexed files must be readable: a hit whose file is not keeps its
    place, with no inliers).

    Args:
        images: query images: files, folders (every image inside), globs or .txt lists
        index: the index directory
        k: how many hits per query at most
        min_similarity: only hits at or above this percentage
        format: table, json (one object per hit per line) or csv
        html: also write a self-contained page of thumbnails to this file
        relative_to: print paths relative to this folder (default: absolute, as indexed)
        verify: check the top candidates' keypoints against the query's (geometric verification)

    Exit status:
        0  every query was read, and at least one has a hit
        1  every query was read, and none has a hit (at or above --min-similarity)
        2  a bad argument, no index, or no query could be read
        3  some queries could not be read (reported on stderr); the others were answered

    Examples:
        vecsearch query q.jpg --index indexes/photos --k 20 --min-similarity 70
        vecsearch query a.jpg b.jpg --index indexes/photos --format json | jq .path
        vecsearch query ~/queries/ --index indexes/photos --html results.html --relative-to ~/photos
        vecsearch query crop.jpg --index indexes/photos --verify
    """
    from .search import open_index
    from .sources import iter_image_paths

    if not images:
        raise UsageError("give at least one query IMAGE (a file, folder, glob or .txt list)")
    if html:
        writable("--html", html)
    problems: list = []
    queries = list(iter_image_paths(images, problems))
    unread = [
        f"{p.path}: query image not found" if "no such" in p.reason else f"{p.path}: {p.reason}"
        for p in problems
    ]
    if not queries:
        if len(unread) == 1:
            raise UsageError(unread[0])
        for line in unread:
            say(f"vecsearch: error: {line}")
        return ERROR
    idx = open_index(index)
    answers = idx.search_each(queries, k=k, min_similarity=min_similarity, verify=verify)
    unread += [a.error for a in answers if a.error]
    answered = [(q, a.hits) for q, a in zip(queries, answers) if not a.error]
    for line in unread:
        say(f"vecsearch: error: {line}")
    if not answered:
        return ERROR
    shown = relative(relative_to)
    note = f"(no hits at or above {min_similarity:g}%)" if min_similarity else "(no hits)"
    columns = ["query", "rank", "similarity", "distance", "id", "path", *(["inliers"] if verify else [])]
    rows = []
    for q, hits in answered:
        found = [{"query": shown(q), **hit_fields(h, shown)} for h in hits]
        rows += found or [{**dict.fromkeys(columns), "query": shown(q), "note": note}]
    write_stdout(render(rows, format, columns, group_by="query"))
    if html:
        from . import report

        say(f"wrote {report.write(html, report.results_page(answered, shown))}")
    if unread:
        return SOME_FAILED
    return OK if any(hits for _, hits in answered) else NOTHING


def dedup(
    index: Dir = DEFAULT_INDEX,
    min_similarity: Annotated[float, Value("PCT", low=0, high=100, above=True)] = 90.0,
    out: File = None,
    html: File = None,
    format: Format = "csv",
    relative_to: Annotated[str | None, Value("DIR", words="a folder")] = None,
    quiet: bool = False,
) -> int:
    """Find every group of near-duplicates in an index, with a suggested keeper per group.

    Keeper: the largest resolution, then the largest file. Every other member of a group is at or
    above --min-similarity of the keeper itself (A~B and B~C do not put C with A unless A~C).

    Args:
        index: the index directory
        min_similarity: two images are duplicates at or above this percentage
        out: write the groups to this file (default: stdout)
        html: also write a page of the groups as thumbnails
        format: csv, json or table
        relative_to: print paths relative to this folder
        quiet: no progress or summary

    Examples:
        vecsearch dedup --index indexes/photos --min-similarity 90 --out groups.csv --html groups.html
        vecsearch dedup --index indexes/photos --format json | jq 'select(.keep == false) | .path'
    """
    from .dedup import find_groups
    from .files import write_bytes
    from .search import open_index
    from .stages import stage

    targets = [writable(flag, path) for flag, path in (("--out", out), ("--html", html)) if path]
    setup_logging(quiet)
    idx = open_index(index)
    with stage("dedup", len(idx), quiet=quiet) as st:
        groups = find_groups(idx, min_similarity, st.update)
    shown = relative(relative_to)
    rows = [{"group": n, **member_fields(m, shown)} for n, g in enumerate(groups, 1) for m in g]
    data = render(rows, format, ["group", "path", "keep", "similarity", "width", "height", "bytes", "id"])
    if out:
        write_bytes(targets[0], data)
    else:
        write_stdout(data)
    if html:
        from . import report

        report.write(targets[-1], report.groups_page([[m.as_dict() for m in g] for g in groups], shown))
    if not quiet:
        could_go = sum(len(g) - 1 for g in groups)
        say(f"{len(groups)} groups, {sum(len(g) for g in groups)} images, {could_go} could go")
    return OK


def info(index: Dir = DEFAULT_INDEX, skipped: bool = False, format: Format = "table") -> int:
    """Describe an index: size, encoder, index type and tuned recall, calibration, skipped files.

    Args:
        index: the index directory
        skipped: list the files that could not be indexed, with the reason for each
        format: table, json or csv

    Examples:
        vecsearch info --index indexes/photos
        vecsearch info --index indexes/photos --skipped --format csv > skipped.csv
    """
    import json

    from . import pathnames
    from .search import open_index

    idx = open_index(index)
    if skipped:
        t = idx.skipped()
        rows = [{"path": p, "reason": r} for p, r in zip(pathnames.of(t), t["reason"].to_pylist())]
        write_stdout(render(rows, format, ["path", "reason"]))
        return OK
    data = idx.info()
    if format == "json":
        write_stdout((json.dumps(data) + "\n").encode())
        return OK
    lines = _info_lines(data)
    if format == "csv":
        write_stdout(render([{"key": k, "value": v} for k, v in lines], "csv", ["key", "value"]))
        return OK
    width = max(len(k) for k, _ in lines)
    write_stdout(
        "".join(f"{key:<{width}}  {value}\n" for key, value in lines).encode("utf-8", "surrogateescape")
    )
    return OK


def _info_lines(data: dict) -> list[tuple[str, object]]:
    ix, enc, cal = data["index"], data["encoder"], data["calibration"]
    cfg = enc["config"]
    if ix["nlist"] == 1:
        faiss_line, recall = f"{ix['factory']}: exact search (every vector compared)", "1.000 (exact search)"
    else:
        rerank = f", re-ranked: {ix['rerank']}x candidates by exact distance" if ix.get("rerank") else ""
        faiss_line = f"{ix['factory']}, nprobe {ix['nprobe']}{rerank}"
        measured = ix.get("recall_at_10")
        recall = f"{measured:.3f} against exact search" if measured is not None else "not measured"
    encoder_line = (
        f"{enc['fingerprint']}: {data['dimension']} dimensions (colour {cfg['colour_pca_dim']} + "
        f"ORB-VLAD {cfg['pca_dim']}), {cfg['n_features']} ORB features, {cfg['n_centres']} visual words, "
        f"images at most {cfg['max_side']} px, colour weight {cfg['colour_weight']}"
    )
    lines = [
        ("index", data["path"]),
        ("version", data["version"]),
        ("images", data["images"]),
        ("skipped", f"{data['skipped']} (list them with --skipped)" if data["skipped"] else 0),
        ("faiss index", faiss_line),
        ("recall@10", recall),
        ("encoder", encoder_line),
        ("calibration", _calibration_line(cal, data["committed_at"])),
        ("committed", data["committed_at"]),
    ]
    if data["advice"]:
        lines.append(("advice", data["advice"]))
    return lines


def calibrate(
    index: Dir = DEFAULT_INDEX,
    labels: Annotated[str | None, Value("FILE", words="a file name")] = None,
    quiet: bool = False,
) -> int:
    """Refit the index's percentages on your own labels, as a new version of the index.

    Out of the box, a percentage says how likely a hit is the same picture as the query (after
    everyday edits). If you mean something else by "the same" (the same scene, the same product,
    the same person), label some indexed images and the percentage learns it: a CSV with the
    header path,group (images of one group are the same thing; paths relative to the file's
    folder or absolute) or a,b,same (pairs, same = 1 or 0). A fifth of the labels is kept out of
    the fit to measure it; vecsearch info shows the result. Labels naming images that are not in
    the index, of one kind only, or too few (10 alike and 10 not among the labelled images' top
    hits, at least) are refused, and nothing changes.

    Args:
        index: the index directory
        labels: the labels file (path,group or a,b,same)
        quiet: no summary

    Examples:
        vecsearch calibrate --index indexes/products --labels products.csv
        vecsearch info --index indexes/products
    """
    from .pipeline import recalibrate

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


def _calibration_line(cal: dict, committed: str | None) -> str:
    pairs = f"{cal.get('positives')} pairs alike and {cal.get('negatives')} not"
    if cal.get("source") == "labels":
        held = cal.get("held_out", {})
        measured = ""
        if "ECE" in held:
            at70 = held.get("precision_at_70")
            measured = f"; on the {held['pairs']} held-out pairs: ECE {held['ECE']:.3f}" + (
                f", precision at 70% {at70:.3f}" if at70 is not None else ""
            )
        return f"from labels {cal.get('labels')} ({cal.get('fitted_at')}): {pairs}{measured}"
    if cal.get("source") == "edited copies":
        return f"fitted when the index was built ({committed}) on edited copies of its images: {pairs}"
    return f"an older curve of raw distances: {pairs} (a rebuild fits the current kind)"


def check(index: Dir = DEFAULT_INDEX) -> int:
    """Verify an index: file checksums against the manifest, counts and ids across FAISS and metadata.

    Prints "ok", or one line per problem (naming the file) on stdout.

    Args:
        index: the index directory

    Exit status:
        0  the index is sound
        1  damage found (each problem on stdout)
        2  a bad argument, or no index there

    Examples:
        vecsearch check --index indexes/photos
    """
    from .check import check as run_check
    from .manifest import MANIFEST, IndexDirError, read_version

    root = index_target(index)
    if not (root / MANIFEST).is_file():
        read_version(root)  # says what is missing
        raise IndexDirError(f"{root}: not a vecsearch index (no {MANIFEST})")
    problems = run_check(root)
    write_stdout("".join(p + "\n" for p in problems or [f"{index}: ok"]).encode("utf-8", "surrogateescape"))
    return NOTHING if problems else OK


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
    from .embedding import embed as run_embed

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
    from .embedding import train as run_train

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


def demo(index: Dir = "indexes/demo", quiet: bool = False) -> int:
    """Build an index of the example photos shipped with vecsearch and query it with an edited copy.

    Args:
        index: where to build the demo index
        quiet: no progress or stage logs

    Examples:
        vecsearch demo
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
        say(f"query: an edited copy (crop, rescale, colour, JPEG) of {original}")
        return query(copy, index=index, k=5)


def serve(
    index: Dir = DEFAULT_INDEX,
    host: Annotated[str, Value("HOST", words="an address")] = "127.0.0.1",
    port: Annotated[int, Value("PORT", low=1, high=65535)] = 8765,
    token_file: File = None,
    max_upload: Annotated[str, Value("SIZE", parse=parse_bytes, words="a size like 25M")] = "25M",
    workers: Annotated[int | None, Value("N", low=1)] = None,
    quiet: bool = False,
) -> int:
    """Serve the index over HTTP: a web page where you drop a photo, and a JSON API.

    The index stays open and moves to each new version that add, remove or build commit, without
    a restart; if a new version cannot be opened the old one is served and /healthz says why.
    Bound to a loopback address (the default) the API is open to this machine; bound to any other
    address every /api call needs a token, read from --token-file or the VECSEARCH_TOKEN
    environment variable (never from the command line, where ps would show it). Ctrl-C or SIGTERM
    stops it after the requests in flight.

    Endpoints: / (the page), POST /api/search (images as multipart files or one raw image;
    k, min_similarity, verify), POST /api/search/vector, GET /api/info, GET /api/images/ID,
    GET /api/images/ID/thumbnail, GET /api/dedup?min_similarity=90, GET /healthz, and the
    OpenAPI description at /api/docs.

    Args:
        index: the index directory
        host: the address to listen on; any other than loopback needs a token
        port: the port to listen on
        token_file: a file holding the token clients must send (Authorization: Bearer TOKEN)
        max_upload: the largest request body accepted; larger ones get 413
        workers: threads encoding uploads; one per core by default
        quiet: no access log

    Examples:
        vecsearch serve --index indexes/photos
        vecsearch serve --index indexes/photos --host 0.0.0.0 --port 8080 --token-file secret.txt
    """
    import signal

    try:
        import uvicorn

        from .server import create_app
    except ImportError as e:
        raise UsageError(
            f"serve needs the server's packages ({e.name} is missing): pip install 'vecsearch[serve]'"
        ) from None
    max_upload = parse_bytes(max_upload)
    token = _token(token_file)
    if token is None and not _loopback(host):
        raise UsageError(
            f"--host {host} is reachable from other machines: give a token with --token-file FILE "
            "or the VECSEARCH_TOKEN environment variable"
        )
    listener = _listen(host, port)
    setup_logging(quiet=False)
    app = create_app(index, token=token, max_upload=max_upload, workers=workers, access_log=not quiet)
    shown = f"[{host}]" if ":" in host else host
    say(f"serving {index} ({app.state.served.index.info()['images']:,} images) at http://{shown}:{port}/")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the handler it
    # found: a no-op here, so that a requested stop exits 0 rather than as killed.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run(sockets=[listener])
    if not quiet:
        say("stopped")
    return OK


def _token(token_file: str | None) -> str | None:
    if token_file is not None:
        try:
            token = Path(token_file).expanduser().read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--token-file {token_file}: cannot read it ({_reason(e)})") from None
        if not token:
            raise UsageError(f"--token-file {token_file}: the file is empty")
        return token
    return os.environ.get("VECSEARCH_TOKEN", "").strip() or None


def _reason(e: Exception) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _loopback(host: str) -> bool:
    import ipaddress
    import socket

    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        raise UsageError(f"--host {host}: no such address") from None
    return all(ipaddress.ip_address(a[4][0].split("%")[0]).is_loopback for a in found)


def _listen(host: str, port: int):
    """The listening socket, made here so that a taken port is one clear line before any work."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({_reason(e)})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


COMMANDS = {
    "build": build,
    "add": add,
    "remove": remove,
    "query": query,
    "dedup": dedup,
    "info": info,
    "check": check,
    "calibrate": calibrate,
    "embed": embed,
    "train": train,
    "serve": serve,
    "demo": demo,
}

"""The commands that search an index: query, dedup, and the demo that builds and queries one."""

from __future__ import annotations

import os
from typing import Annotated

from ..arguments import UsageError, Value
from ..output import hit_fields, member_fields, relative, render, write_stdout
from .changing import build
from .common import (
    DEFAULT_INDEX,
    ERROR,
    NOTHING,
    OK,
    SOME_FAILED,
    Count,
    Dir,
    File,
    Format,
    Percent,
    say,
    setup_logging,
    writable,
)


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
    for a hit that is the only one near its query, as many queries are assumed to have a copy in
    the collection as not, so an unrelated photo's nearest image reads low. vecsearch calibrate
    teaches it another meaning. Every query appears in the output: one that
    has no hits gets a single row with empty hit fields (null in JSON). A query that cannot be
    read is reported on stderr and the others are answered. A query is also searched as its mirror
    image, and one without colour by its texture and keypoints alone. With --verify the top 20
    candidates are checked keypoint by keypoint and the verified ones come first; a verified hit's
    percentage then says how well the two pictures agree once aligned and how closely the
    keypoints fit that alignment (another shot of the same scene verifies too, but agrees only
    where the object is and strays from it by parallax; after calibrate --labels the percentages
    stay the labels' curve's and verification only reorders). Inliers, agreement and residual
    columns; slower, and the indexed files must be readable: a hit whose file is not keeps its
    place, with no inliers.

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
    from ..search import open_index
    from ..sources import iter_image_paths

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
    checked = ["inliers", "agreement", "residual"] if verify else []
    columns = ["query", "rank", "similarity", "distance", "id", "path", *checked]
    rows = []
    for q, hits in answered:
        found = [{"query": shown(q), **hit_fields(h, shown)} for h in hits]
        rows += found or [{**dict.fromkeys(columns), "query": shown(q), "note": note}]
    write_stdout(render(rows, format, columns, group_by="query"))
    if html:
        from .. import report

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
    verify: bool = False,
    quiet: bool = False,
) -> int:
    """Find every group of near-duplicates in an index, with a suggested keeper per group.

    Keeper: the largest resolution, then the largest file. Every other member of a group is at or
    above --min-similarity of the keeper itself (A~B and B~C do not put C with A unless A~C). With
    --verify each member is also checked against the keeper keypoint by keypoint and stays only if
    its verified percentage does: most other shots of one scene (a burst, a second take), which
    look alike to the vectors, drop out. It reads the indexed files.

    Args:
        index: the index directory
        min_similarity: two images are duplicates at or above this percentage
        out: write the groups to this file (default: stdout)
        html: also write a page of the groups as thumbnails
        format: csv, json or table
        relative_to: print paths relative to this folder
        verify: check each member against its keeper's keypoints (geometric verification)
        quiet: no progress or summary

    Examples:
        vecsearch dedup --index indexes/photos --min-similarity 90 --out groups.csv --html groups.html
        vecsearch dedup --index indexes/photos --verify --out groups.csv
        vecsearch dedup --index indexes/photos --format json | jq 'select(.keep == false) | .path'
    """
    from ..dedup import find_groups
    from ..files import write_bytes
    from ..search import open_index

    targets = [writable(flag, path) for flag, path in (("--out", out), ("--html", html)) if path]
    setup_logging(quiet)
    idx = open_index(index)
    groups = find_groups(idx, min_similarity, verify=verify, quiet=quiet)
    shown = relative(relative_to)
    rows = [{"group": n, **member_fields(m, shown)} for n, g in enumerate(groups, 1) for m in g]
    columns = ["group", "path", "keep", "similarity", "width", "height", "bytes", "id"]
    data = render(rows, format, columns + (["inliers", "agreement", "residual"] if verify else []))
    if out:
        write_bytes(targets[0], data)
    else:
        write_stdout(data)
    if html:
        from .. import report

        report.write(targets[-1], report.groups_page([[m.as_dict() for m in g] for g in groups], shown))
    if not quiet:
        could_go = sum(len(g) - 1 for g in groups)
        say(f"{len(groups)} groups, {sum(len(g) for g in groups)} images, {could_go} could go")
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

    from ..edits import random_edit
    from ..encoder import example_images

    photos = example_images()
    build(*photos, index=index, workers=0, quiet=quiet)
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "chelsea-edited.jpg")
        original = next(p for p in photos if p.endswith("chelsea.jpg"))
        cv2.imwrite(copy, random_edit(cv2.imread(original), np.random.default_rng(7), strength=0.5))
        say(f"query: an edited copy (crop, rescale, colour, JPEG) of {original}")
        return query(copy, index=index, k=5)

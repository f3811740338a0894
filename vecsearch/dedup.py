"""Near-duplicate groups over a whole index, without an N×N matrix.

Each image's radius is the distance the calibration maps to the similarity threshold at that
image's scale (its 11th nearest image, ``calibration.py``). Vectors are read back from the index
in batches, each batch is range-searched, and the pairs found are joined into candidate groups
(connected components of a sparse graph). Memory grows with the number of pairs, not N². A group
is then its keeper and the images within the keeper's own radius: a chain of look-alikes (A~B,
B~C, but not A~C) is split, so that nothing is offered for deletion that is not a near-duplicate
of the image kept.

With verification each member is also checked against its keeper keypoint by keypoint
(``verify.py``) and stays only if its verified percentage does: another shot of the keeper's scene,
which the vectors alone may put within the radius, is the one thing a user must not be offered for
deletion. Verification only takes members out (they may make a group of their own); it finds no
pair the vectors did not.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import ivf, pathnames
from . import verify as verify_mod
from .images import to_pixels
from .search import Index
from .stages import stage

BATCH = 1024
log = logging.getLogger("vecsearch")


@dataclass
class Member:
    path: str
    id: int
    keep: bool
    similarity: float  # to the keeper
    width: int
    height: int
    bytes: int
    inliers: int | None = None  # with verification, against the keeper (None: not checked)
    agreement: float | None = None
    residual: float | None = None

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def find_groups(
    index: Index,
    min_similarity: float = 90.0,
    progress: Callable[[int], object] | None = None,
    verify: bool = False,
    quiet: bool = True,
) -> list[list[Member]]:
    """Groups of two or more images, largest first; in each, the suggested keeper (largest
    resolution, then largest file) comes first and every other member is at ≥ ``min_similarity`` %
    of it. ``verify`` reads the indexed files. ``progress`` is told of the images searched, as the
    stage's bar is (shown unless ``quiet``)."""
    if not 0 < min_similarity <= 100:
        raise ValueError(f"min_similarity is a percentage from 0 (excluded) to 100, not {min_similarity!r}")
    reach = index.calibration.evidence_for(min_similarity)
    meta = index.metadata()
    ids = meta["id"].to_numpy()
    if reach < 0 or len(ids) < 2:
        return []
    full = ivf.load(index.version.file("index"), mmap=False)
    ivf.set_nprobe(full, index.manifest.index.nprobe)
    with ivf.by_id(full):
        return _groups(index, full, meta, ids, reach, progress, min_similarity, verify, quiet)


def _groups(
    index: Index, full, meta, ids: np.ndarray, reach: float, progress, least: float, verify: bool, quiet: bool
) -> list[list[Member]]:
    from scipy.sparse.csgraph import connected_components

    def vectors(some: np.ndarray) -> np.ndarray:
        return ivf.reconstruct(full, some, index.rerank_rows)

    with stage("dedup", len(ids), quiet=quiet) as st:

        def searched(n: int) -> None:
            st.update(n)
            if progress:
                progress(n)

        graph, radius, scale = _near_pairs(index, full, ids, reach, vectors, searched)
    if graph is None:
        return []
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    in_group = np.flatnonzero(sizes[label] > 1)
    by_label = in_group[np.argsort(label[in_group], kind="stable")]  # members, grouped, in one sort
    bounds = np.flatnonzero(np.r_[True, np.diff(label[by_label]) != 0, True])
    names = pathnames.of(meta)

    def column(name: str) -> np.ndarray:  # vectors from other tools may lack file facts: 0
        return np.nan_to_num(meta[name].to_numpy(zero_copy_only=False).astype(np.float64)).astype(np.int64)

    widths, heights, size = column("width"), column("height"), column("bytes")
    area = widths * heights

    def member(m: int, keep: bool, similarity: float, check: verify_mod.Check | None) -> Member:
        facts = (int(widths[m]), int(heights[m]), int(size[m]))
        found = {} if check is None else dataclasses.asdict(check)  # Check's fields are Member's
        return Member(names[m], int(ids[m]), keep, similarity, *facts, **found)

    groups = []
    unread: set[str] = set()  # members verification could not check (a file gone or unreadable)
    with stage("verify", len(by_label), quiet=quiet or not verify) as checked:  # logs only if used
        for a, b in itertools.pairwise(bounds):
            members = np.array(sorted(by_label[a:b], key=lambda m: (-area[m], -size[m], names[m])))
            vecs = vectors(ids[members])
            left = np.arange(len(members))
            while len(left) > 1:  # the best image left keeps what is near it; the rest is grouped again
                keeper = members[left[0]]
                d = ((vecs[left] - vecs[left[0]]) ** 2).sum(1)
                near = np.flatnonzero(d <= radius[keeper] + 1e-6)
                sim = index.calibration.percent(d[near][None, :], scale[[keeper]])[0]
                checks: list[verify_mod.Check | None] = [None] * len(near)
                if verify and len(near) > 1:
                    others = [names[m] for m in members[left[near[1:]]]]
                    checks[1:] = _checks(index, names[keeper], others)
                    unread |= {p for p, c in zip(others, checks[1:]) if c is None}
                    if not index.calibration.taught:  # the user's meaning: the labels' curve says it
                        sim = np.array([verify_mod.adjusted(s, c) for s, c in zip(sim, checks)])
                kept = [n for n in range(len(near)) if n == 0 or not verify or sim[n] >= least]
                if len(kept) > 1:
                    groups.append(
                        [member(members[left[near[n]]], n == 0, float(sim[n]), checks[n]) for n in kept]
                    )
                left = np.delete(left, near[kept])
            if verify:
                checked.update(len(members))
    if unread:
        log.warning(
            "verify: %d images could not be read; they were grouped on their vectors alone", len(unread)
        )
    groups.sort(key=lambda g: (-len(g), g[0].path))
    return groups


def _checks(index: Index, keeper: str, others: list[str]) -> list[verify_mod.Check | None]:
    """Each of ``others`` checked against ``keeper``; None where a file cannot be read (such a
    member keeps its vector's percentage, as a search's hit does)."""
    side = index.encoder.config.max_side
    try:
        kept = verify_mod.QueryKeypoints(to_pixels(keeper, side))
    except (OSError, ValueError):  # ImageError is a ValueError
        return [None] * len(others)
    return verify_mod.evidence(kept, [(p, False) for p in others], lambda p: to_pixels(p, side))


def _near_pairs(index: Index, full, ids: np.ndarray, reach: float, vectors, progress):
    """The sparse graph (positions in ``ids``) of the pairs within the first one's radius, found by
    range search in batches (None if there is no pair), with every image's radius and scale."""
    from scipy.sparse import coo_matrix

    pos = {int(i): n for n, i in enumerate(ids)}
    rows, cols = [], []
    radius, scale = np.zeros(len(ids)), np.ones(len(ids))
    for start in range(0, len(ids), BATCH):
        batch = ids[start : start + BATCH]
        x = vectors(batch)
        scale[start : start + len(batch)] = index.scales(x, exclude=batch)
        r = reach * scale[start : start + len(batch)]
        radius[start : start + len(batch)] = r
        lims, dists, found = full.range_search(x, float(r.max()) + 1e-6)
        for q in range(len(batch)):
            near, d = found[lims[q] : lims[q + 1]], dists[lims[q] : lims[q + 1]]
            if index.rerank_rows is not None and len(near):  # PQ distances are coarse: confirm exactly
                d = ((index.rerank_rows.get(near) - x[q]) ** 2).sum(1)
            for j in near[d <= r[q] + 1e-6]:
                if j != batch[q] and int(j) in pos:
                    rows.append(start + q)
                    cols.append(pos[int(j)])
        if progress:
            progress(len(batch))
    if not rows:
        return None, radius, scale
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    return graph, radius, scale

"""Near-duplicate groups over a whole index, without an N×N matrix.

Each image's radius is the distance the calibration maps to the similarity threshold at that
image's scale (its 11th nearest image, ``calibration.py``). Vectors are read back from the index
in batches, each batch is range-searched, and the pairs found are joined into candidate groups
(connected components of a sparse graph). Memory grows with the number of pairs, not N². A group
is then its keeper and the images within the keeper's own radius: a chain of look-alikes (A~B,
B~C, but not A~C) is split, so that nothing is offered for deletion that is not a near-duplicate
of the image kept.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from . import ivf, pathnames
from .search import Index

BATCH = 1024


@dataclass
class Member:
    path: str
    id: int
    keep: bool
    similarity: float  # to the keeper
    width: int
    height: int
    bytes: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def find_groups(index: Index, min_similarity: float = 90.0, progress=None) -> list[list[Member]]:
    """Groups of two or more images, largest first; in each, the suggested keeper (largest
    resolution, then largest file) comes first and every other member is at ≥ ``min_similarity`` %
    of it."""
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
        return _groups(index, full, meta, ids, reach, progress)


def _groups(index: Index, full, meta, ids: np.ndarray, reach: float, progress) -> list[list[Member]]:
    from scipy.sparse.csgraph import connected_components

    def vectors(some: np.ndarray) -> np.ndarray:
        return ivf.reconstruct(full, some, index.rerank_rows)

    graph, radius, scale = _near_pairs(index, full, ids, reach, vectors, progress)
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

    def member(m: int, keep: bool, similarity: float) -> Member:
        return Member(names[m], int(ids[m]), keep, similarity, int(widths[m]), int(heights[m]), int(size[m]))

    groups = []
    for a, b in itertools.pairwise(bounds):
        members = np.array(sorted(by_label[a:b], key=lambda m: (-area[m], -size[m], names[m])))
        vecs = vectors(ids[members])
        left = np.arange(len(members))
        while len(left) > 1:  # the best image left keeps what is near it; the rest is grouped again
            keeper = members[left[0]]
            d = ((vecs[left] - vecs[left[0]]) ** 2).sum(1)
            near = d <= radius[keeper] + 1e-6
            if near.sum() > 1:
                sim = index.calibration.percent(d[near][None, :], scale[[keeper]])[0]
                groups.append(
                    [member(m, n == 0, float(s)) for n, (m, s) in enumerate(zip(members[left[near]], sim))]
                )
            left = left[~near]
    groups.sort(key=lambda g: (-len(g), g[0].path))
    return groups


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

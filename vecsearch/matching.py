"""How a query meets the index: by its vector, by its mirror image's, and without colour when it
has none.

A copy may be mirrored, which ORB and the colour grid do not survive, so every query is also
searched as its mirror image; a hit keeps the better of the two distances, the mirror's plus
``MIRROR_PENALTY`` (without it, mirror images of unrelated scenes come too close: Holidays mAP
fell from 0.79 to 0.75). A colourless query (a greyscale copy) has no colour to compare: its
colour part is left out, and because every indexed vector's colour part has the same squared
norm (the colour weight w), leaving it out ranks by the other part alone. That distance is put on
the scale of the full one by dividing by 1 − w. bench/TUNING.md has the measurements.
"""

from __future__ import annotations

import numpy as np

from . import ivf
from .encoder import Queries

#: Added to a distance found through the mirror image (squared L2, vectors of unit norm).
MIRROR_PENALTY = 0.125


def _prepared(queries: Queries, colour_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The straight and mirrored vectors, colour parts zeroed for colourless queries."""
    straight = np.array(queries.vectors, np.float32)
    mirrored = np.array(queries.mirrored, np.float32)
    straight[queries.colourless, :colour_dim] = 0
    mirrored[queries.colourless, :colour_dim] = 0
    return straight, mirrored


def _rescaled(d: np.ndarray, colourless: np.ndarray, w: float) -> np.ndarray:
    """Distances of colourless queries (searched with the colour part zeroed, so offset by w) on
    the full distance's scale."""
    d = np.array(d, np.float64)
    d[colourless] = np.maximum(d[colourless] - w, 0.0) / (1.0 - w)
    return d


def search(
    faiss_index, queries: Queries, k: int, colour_dim: int, colour_weight: float, rows=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distances, ids, through the mirror), each (q, k), best first; id -1 where there are fewer
    hits. ``rows``: a PQ index's re-ranking rows."""
    straight, mirrored = _prepared(queries, colour_dim)
    d1, i1 = ivf.search(faiss_index, straight, k, rows)
    d2, i2 = ivf.search(faiss_index, mirrored, k, rows)
    grey = queries.colourless
    dist = np.hstack(
        [_rescaled(d1, grey, colour_weight), _rescaled(d2, grey, colour_weight) + MIRROR_PENALTY]
    )
    ids = np.hstack([i1, i2])
    via_mirror = np.hstack([np.zeros(i1.shape, bool), np.ones(i2.shape, bool)])
    dist[ids < 0] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")
    dist, ids, via_mirror = (np.take_along_axis(a, order, 1) for a in (dist, ids, via_mirror))
    width = i1.shape[1]
    out_d = np.full((len(queries), width), np.inf)
    out_i = np.full((len(queries), width), -1, np.int64)
    out_m = np.zeros((len(queries), width), bool)
    for r in range(len(queries)):
        _, first = np.unique(ids[r], return_index=True)  # an id's first place is its best distance
        keep = np.sort(first)
        keep = keep[ids[r, keep] >= 0][:width]
        out_d[r, : len(keep)], out_i[r, : len(keep)], out_m[r, : len(keep)] = (
            dist[r, keep],
            ids[r, keep],
            via_mirror[r, keep],
        )
    return out_d, out_i, out_m


def distances(queries: Queries, targets: np.ndarray, colour_dim: int, colour_weight: float) -> np.ndarray:
    """The distance ``search`` gives query i to the vector ``targets[i]``."""
    straight, mirrored = _prepared(queries, colour_dim)
    targets = np.asarray(targets, np.float32)
    grey = queries.colourless
    d1 = _rescaled(np.sum((straight - targets) ** 2, axis=1), grey, colour_weight)
    d2 = _rescaled(np.sum((mirrored - targets) ** 2, axis=1), grey, colour_weight) + MIRROR_PENALTY
    return np.minimum(d1, d2)


def distance_matrix(
    queries: Queries, targets: np.ndarray, colour_dim: int, colour_weight: float
) -> np.ndarray:
    """(queries, targets): the distance ``search`` gives each query to each target vector."""
    straight, mirrored = _prepared(queries, colour_dim)
    targets = np.asarray(targets, np.float32)
    grey = queries.colourless[:, None].repeat(len(targets), 1)

    def squared(a: np.ndarray) -> np.ndarray:
        return np.maximum(
            (a * a).sum(1)[:, None] + (targets * targets).sum(1)[None, :] - 2 * a @ targets.T, 0.0
        )

    d1 = _rescaled(squared(straight), grey, colour_weight)
    d2 = _rescaled(squared(mirrored), grey, colour_weight) + MIRROR_PENALTY
    return np.minimum(d1, d2)

"""Re-ranking for PQ indexes: exact distances from a float16 copy of the vectors, memory-mapped.

PQ codes make an index small enough for the memory budget, but their distances are coarse, so a
PQ search fetches ``factor`` times the hits wanted (8, raised at build time where the collection
needs more to reach the target recall) and orders them by their distance to the real vectors.
FAISS's refine indexes would keep those vectors in RAM (defeating the budget) and do not take our
ids; here they live in a ``.npy`` file with one row per id, and a query touches only the rows of
its candidates.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FACTORS = (8, 16, 32, 64)  # candidates fetched from the PQ index per hit wanted, tried in this order
DTYPE = np.float16  # half the disk of float32; distances move by ~1e-3 of a unit vector's


class Vectors:
    """The re-ranking rows of one index version (read-only, memory-mapped)."""

    def __init__(self, path: str | os.PathLike, factor: int = FACTORS[0]):
        self.path = Path(path)
        self.factor = factor
        self.rows = np.load(self.path, mmap_mode="r")
        if self.rows.ndim != 2 or self.rows.dtype != DTYPE:
            raise ValueError(
                f"{self.path}: not a re-ranking vectors file ({self.rows.dtype}, shape {self.rows.shape})"
            )

    def get(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows of ``ids`` (all ≥ 0), read in id order so the disk is read forwards."""
        ids = np.asarray(ids, np.int64)
        order = np.argsort(ids, kind="stable")
        out = np.empty((len(ids), self.rows.shape[1]), np.float32)
        out[order] = self.rows[ids[order]]
        return out

    def rerank(self, queries: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest of each query's candidate ``ids`` (-1 = none) by exact distance: (distances, ids)."""
        found = ids >= 0
        dist = np.full(ids.shape, np.inf, np.float32)
        if found.any():
            q, _ = np.nonzero(found)
            dist[found] = ((self.get(ids[found]) - queries[q]) ** 2).sum(1)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        dist, ids = np.take_along_axis(dist, order, 1), np.take_along_axis(ids, order, 1)
        dist[ids < 0] = np.finfo(np.float32).max  # as FAISS reports a missing hit
        return dist, ids


def create(path: Path, rows: int, dim: int, previous: Path | None = None) -> np.memmap:
    """A new vectors file with room for ids 0..rows-1, holding the rows of ``previous`` (an older
    version's file); the caller writes the other rows and flushes. Rows never written stay zero
    and are never read: FAISS returns only ids it holds."""
    out = np.lib.format.open_memmap(path, "w+", DTYPE, (rows, dim))
    if previous is not None:
        old = np.load(previous, mmap_mode="r")
        for s in range(0, len(old), 65_536):
            part = old[s : s + 65_536]
            out[s : s + len(part)] = part
    return out

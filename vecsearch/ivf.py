"""The FAISS index: choose its type from N, d and a memory budget; train, fill, tune, search, save,
load.

Every index is an IVF index, so ids, removal and memory-mapped loading work the same way for all:
small collections get one list ("IVF1,Flat"), which scans everything and is exact. Larger ones get
√N-scaled lists, with codes compressed (SQ8, then PQ) when the raw vectors would not fit the memory
budget. nprobe is tuned at build time to a measured recall@10 against exact search.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence

import faiss
import numpy as np

from .manifest import IndexSpec
from .rerank import FACTORS, Vectors

log = logging.getLogger(__name__)

#: Below this many vectors a full scan is fast enough (a few ms per query) and exact.
EXACT_MAX = 20_000
TARGET_RECALL = 0.95
RECALL_K = 10


def _pq_codes(d: int, n: int, budget: int) -> str:
    """PQ codes as large as the budget allows (bytes per vector; m must divide d)."""
    per_vector = budget / max(n, 1) / 1.1 - 16  # ids and list overhead
    sizes = [m for m in (192, 128, 96, 64, 48, 32, 24, 16, 8, 4) if d % m == 0]
    return f"PQ{next((m for m in sizes if m <= per_vector), sizes[-1])}"


def choose(n: int, d: int, memory_budget: int | None = None) -> IndexSpec:
    """Pick the index type for n vectors of dimension d within a memory budget (bytes).

    Follows the FAISS guidelines: exact below ~20k vectors; IVF with nlist ≈ 2√N (a power of two,
    the low end of FAISS's advice, as k-means on 2 cores must stay affordable; nprobe makes up for
    it) above; Flat codes when n·d·4 fits the budget, SQ8 when n·d does, else PQ with codes as
    large as fit, re-ranked by exact distances from vectors kept on disk (FAISS's "IVFPQ + R",
    with the refinement vectors memory-mapped instead of in RAM). Without a budget, raw float
    vectors are kept.
    """
    if n <= EXACT_MAX:
        return IndexSpec("IVF1,Flat", 1, 1, 1.0, memory_budget)
    nlist = int(min(65536, max(16, 2 ** round(math.log2(2 * math.sqrt(n))))))
    if memory_budget is None or n * d * 4 * 1.1 <= memory_budget:
        codes = "Flat"
    elif n * d * 1.1 <= memory_budget:
        codes = "SQ8"
    else:
        codes = _pq_codes(d, n, memory_budget)
    return IndexSpec(
        f"IVF{nlist},{codes}",
        nlist,
        memory_budget=memory_budget,
        rerank=FACTORS[0] if codes.startswith("PQ") else 0,
    )


def train_size(spec: IndexSpec) -> int:
    """How many vectors to train the coarse quantizer (and codes) on: FAISS advises 30–256 per list."""
    return max(1, 40 * spec.nlist) if spec.nlist > 1 else 1


def create(spec: IndexSpec, d: int, train_vectors: np.ndarray) -> faiss.Index:
    if spec.nlist == 1:
        # One list around the origin: nothing to learn, so no k-means (and none of its warnings).
        quantizer = faiss.IndexFlatL2(d)
        quantizer.add(np.zeros((1, d), np.float32))
        index = faiss.IndexIVFFlat(quantizer, d, 1, faiss.METRIC_L2)
        index.is_trained = True
        return index
    index = faiss.index_factory(d, spec.factory, faiss.METRIC_L2)
    if isinstance(index, faiss.IndexIVFPQ):
        index.do_polysemous_training = False  # a minute of annealing for a search mode we do not use
    with _bounded_pq_tables():
        index.train(np.ascontiguousarray(train_vectors, np.float32))
    set_nprobe(index, spec.nprobe)
    return index


def extract_ivf(index: faiss.Index) -> faiss.IndexIVF:
    return faiss.extract_index_ivf(index)


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    extract_ivf(index).nprobe = int(nprobe)


def add(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray) -> None:
    index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids, np.int64))


def remove(index: faiss.Index, ids: Iterable[int]) -> int:
    ids = np.fromiter(ids, np.int64)
    if not len(ids):
        return 0
    return int(index.remove_ids(faiss.IDSelectorBatch(ids)))


@contextlib.contextmanager
def by_id(index: faiss.Index) -> Iterator[faiss.Index]:
    """Within the block, ``index.reconstruct_batch`` takes our ids (scan positions, with gaps)."""
    ivf = extract_ivf(index)
    if ivf.direct_map.type != faiss.DirectMap.NoMap:  # already inside such a block
        yield index
        return
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # an array map needs ids 0..n-1
    try:
        yield index
    finally:
        ivf.set_direct_map_type(faiss.DirectMap.NoMap)  # a direct map would be saved with the index


def reconstruct(index: faiss.Index, ids: Sequence[int], rows: Vectors | None = None) -> np.ndarray:
    """The vectors of ``ids`` that searches measure distances to: the re-ranking rows where there
    are some, else decoded from the index's codes."""
    if rows is not None:
        return rows.get(np.asarray(ids, np.int64))
    with by_id(index):
        return index.reconstruct_batch(np.asarray(ids, np.int64))


def search(
    index: faiss.Index, queries: np.ndarray, k: int, rows: Vectors | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(distances, ids), both (q, k); missing hits have id -1. Distances are squared L2. With
    re-ranking ``rows`` (PQ indexes), rows.factor·k candidates are ordered by their exact distances."""
    k = max(1, min(int(k), max(index.ntotal, 1)))
    queries = np.ascontiguousarray(queries, np.float32)
    if rows is None:
        return index.search(queries, k)
    _, ids = index.search(queries, min(k * rows.factor, max(index.ntotal, 1)))
    return rows.rerank(queries, ids, k)


def tune_nprobe(
    index: faiss.Index,
    queries: np.ndarray,
    ground_truth: np.ndarray,
    target: float = TARGET_RECALL,
    rows: Vectors | None = None,
) -> tuple[int, float]:
    """Smallest power-of-two nprobe whose recall@10 (after re-ranking, if any) against
    ``ground_truth`` reaches ``target``. With re-ranking ``rows``, ``rows.factor`` is raised (FACTORS)
    while even a scan of every list falls short: then the PQ ranking, not the probing, is what misses."""
    for factor in FACTORS if rows is not None else (None,):
        if rows is not None:
            rows.factor = factor
        nprobe, recall = _tune_nprobe(index, queries, ground_truth, target, rows)
        if recall >= target:
            break
    return nprobe, recall


def _tune_nprobe(
    index: faiss.Index, queries: np.ndarray, ground_truth: np.ndarray, target: float, rows: Vectors | None
) -> tuple[int, float]:
    ivf = faiss.extract_index_ivf(index)
    k = ground_truth.shape[1]
    nprobe, recall = 1, 0.0
    while True:
        ivf.nprobe = nprobe
        _, found = search(index, queries, k, rows)
        recall = float(
            np.mean(
                [
                    len(np.intersect1d(f, g[g >= 0])) / max(1, (g >= 0).sum())
                    for f, g in zip(found, ground_truth)
                ]
            )
        )
        if recall >= target or nprobe >= ivf.nlist:
            return nprobe, recall
        nprobe = min(nprobe * 2, ivf.nlist)


class ExactNeighbours:
    """The exact k nearest ids of a few queries among vectors streamed past in batches (bounded
    memory): the ground truth nprobe is tuned against, gathered while an index is filled."""

    def __init__(self, queries: np.ndarray, k: int = RECALL_K):
        self.queries = np.ascontiguousarray(queries, np.float32)
        self.k = k
        self.heap = faiss.ResultHeap(len(self.queries), k)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        flat = faiss.IndexFlatL2(self.queries.shape[1])
        flat.add(np.ascontiguousarray(vectors, np.float32))
        d, pos = flat.search(self.queries, self.k)
        self.heap.add_result(d, np.where(pos >= 0, np.asarray(ids, np.int64)[np.maximum(pos, 0)], -1))

    def ids(self) -> np.ndarray:
        """(queries, k) ids, nearest first."""
        self.heap.finalize()
        return self.heap.I


def fill(
    index: faiss.Index,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    copy_to: np.ndarray | None = None,
    truth: ExactNeighbours | None = None,
) -> None:
    """Add (ids, vectors) batches to the index; also to the re-ranking rows being written
    (``copy_to``, from ``rerank.create``) and to the ground truth ``truth``, where given."""
    for ids, vectors in batches:
        add(index, vectors, ids)
        if copy_to is not None:
            copy_to[ids] = vectors
        if truth is not None:
            truth.add(vectors, ids)
    if copy_to is not None:
        copy_to.flush()


def save(index: faiss.Index, path: str | os.PathLike) -> None:
    faiss.write_index(index, os.fspath(path))


def load(path: str | os.PathLike, mmap: bool = True) -> faiss.Index:
    """Read an index; IVF lists are memory-mapped so a query process reads only what it probes."""
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    with _bounded_pq_tables():
        return faiss.read_index(os.fspath(path), flags)


#: IVF-PQ precomputes nlist·m·256 floats when trained and again on every load: 192 MB and 0.1 s for
#: IVF2048,PQ96, more than the memory budget that chose PQ. Larger tables are skipped (distance
#: tables are then computed per probed list, which one query hardly notices).
PQ_TABLE_MAX_BYTES = 16 << 20


@contextlib.contextmanager
def _bounded_pq_tables() -> Iterator[None]:
    before = faiss.cvar.precomputed_table_max_bytes  # a process-wide setting: put it back
    faiss.cvar.precomputed_table_max_bytes = PQ_TABLE_MAX_BYTES
    try:
        yield
    finally:
        faiss.cvar.precomputed_table_max_bytes = before

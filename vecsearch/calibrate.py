"""Fitting the calibration when an index is built: the sources, their edited copies, the pairs, the curve.

About ``SAMPLE`` indexed images are sources. Each gets a few random everyday edits
(``edits.random_edit``), seeded by its path, so the copies do not depend on which worker, batch or
stage makes them. A build makes them in its encode stage from the pixels it has decoded anyway
(``CopyPlan``, the encoder's ``derive``); where fewer than half the sample comes that way (a build
from vectors, a refit), more sources are read on the executor (``encode_copies``).

Each copy queries the index. Its distance to its source is a positive; its other top-10 hits are
negatives, except images that are as close to the source as ``EXCLUDE_QUANTILE`` of all the
copies are to theirs (a collection with duplicates must not teach that duplicates are
non-matches). An isotonic regression of "same picture" on distance gives the curve.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import executors
from .calibration import Calibration
from .edits import random_edit
from .encoder import Encoder, Queries, example_images
from .images import ImageError, to_pixels
from .images import load as load_image
from .stages import stage

SAMPLE = 200
K = 10  # hits per copy that can be negatives
COPY_BATCH = 8  # sources per executor task
#: A hit closer to a source than this quantile of the copies' distances to their sources counts as
#: a copy too, not as a non-match (chosen on UKBench/Holidays reliability: 0.5 → ECE 0.13/0.04,
#: 0.8 → 0.05/0.03).
EXCLUDE_QUANTILE = 0.8
KNOTS = 64


def edited_copies(pixels: np.ndarray, path: str, copies: int, seed: int) -> list[np.ndarray]:
    """``copies`` random edits of a file's decoded pixels; they depend only on its path and ``seed``."""
    rng = np.random.default_rng([seed, zlib.crc32(path.encode("utf-8", "surrogateescape"))])
    return [random_edit(pixels, rng) for _ in range(copies)]


@dataclass(frozen=True)
class CopyPlan:
    """Which files of a build are sources (about ``rate`` of them), with how many copies each. The
    choice hangs on a keyed hash of the path, so it is the same whatever the batches, workers or
    restarts. Called as the encoder's ``derive``, it makes a source's copies."""

    rate: float
    copies: int
    seed: int = 0

    def wants(self, path: str) -> bool:
        if self.rate >= 1:
            return True
        key = self.seed.to_bytes(8, "little")
        h = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8, key=key)
        return int.from_bytes(h.digest(), "little") < self.rate * 2**64

    def __call__(self, path: str, pixels: np.ndarray) -> list[np.ndarray]:
        return edited_copies(pixels, path, self.copies, self.seed) if self.wants(path) else []


def copies_per_source(sources: int) -> int:
    """Edited copies per source: enough for about 100 positives, 1 to 10 each."""
    return max(1, min(10, -(-100 // max(1, sources))))


def copy_plan(n_paths: int, seed: int = 0) -> CopyPlan:
    """The sources a build of ``n_paths`` files picks while encoding: about SAMPLE of them."""
    return CopyPlan(SAMPLE / max(1, n_paths), copies_per_source(min(n_paths, SAMPLE)), seed)


def encode_copies(encoder: Encoder, paths: list[str], copies: int, seed: int) -> list[np.ndarray | None]:
    """``copies`` edits of each file as queries (``Queries.rows``, (copies, 2·dim + 1) each), None
    where the file cannot be read."""
    edited: list[np.ndarray] = []
    read: list[bool] = []
    side = encoder.config.max_side
    for path in paths:
        try:
            pixels = load_image(path, side)[0]
        except ImageError:
            read.append(False)
            continue
        edited += [to_pixels(e, side) for e in edited_copies(pixels, path, copies, seed)]
        read.append(True)
    rows = iter(np.split(encoder.queries(edited).rows(), np.arange(copies, len(edited), copies)))
    return [next(rows) if ok else None for ok in read]


def fit(positive: np.ndarray, negative: np.ndarray, knots: int = KNOTS) -> Calibration:
    """Fit P(same picture | distance) from distances of true matches and of non-matches."""
    from scipy.optimize import isotonic_regression  # half the import time of scikit-learn's

    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("calibration needs both matching and non-matching pairs")
    x = np.r_[positive, negative]
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    at, where, count = np.unique(x, return_inverse=True, return_counts=True)  # ties: one weighted point
    fitted = isotonic_regression(np.bincount(where, y) / count, weights=count, increasing=False).x
    top = float(x.max()) * 1.05 + 1e-6
    grid = np.unique(np.r_[0.0, np.quantile(x, np.linspace(0, 1, knots)), top])
    prob = np.interp(grid, at, fitted)  # linear between fitted points, flat beyond them
    prob[0] = 1.0  # the same image is 100%
    prob = np.minimum.accumulate(prob)
    bins = np.linspace(0, top, 41)
    fitted_on = {
        "positives": len(positive),
        "negatives": len(negative),
        "histogram_edges": bins.round(4).tolist(),
        "positive_histogram": np.histogram(positive, bins)[0].tolist(),
        "negative_histogram": np.histogram(negative, bins)[0].tolist(),
    }
    return Calibration(grid, prob, fitted_on)


def fit_calibration(
    encoder: Encoder,
    faiss_index,
    items: Sequence[tuple[int, str]],
    quiet: bool,
    seed: int = 0,
    workers: int | None = None,
    scheduler=None,
    rerank_rows=None,
    copies: dict[int, np.ndarray] | None = None,
) -> Calibration:
    """The calibration of an index: ``items`` are (id, path) of its images, ``copies`` (id →
    vectors) the copies its encode stage made, ``rerank_rows`` a PQ index's re-ranking rows.

    The sources' vectors come from the index. Where the images cannot be read from here (vectors
    made on another machine), the example photos shipped with vecsearch stand in as sources.
    """
    from . import ivf  # here: workers import this module for CopyPlan, and need no FAISS

    with stage("calibrate", SAMPLE, unit="sources", quiet=quiet) as st:
        ids = sorted(copies or {})
        edited = [copies[i] for i in ids] if copies else []
        st.update(len(ids))
        if len(ids) < SAMPLE // 2:
            more = _more_sources(encoder, items, set(ids), seed, workers, scheduler, st)
            ids += [i for i, _ in more]
            edited += [v for _, v in more]
        if ids:
            v_orig = ivf.reconstruct(faiss_index, ids, rerank_rows)
        else:
            v_orig = np.zeros((0, encoder.dim), np.float32)
        if len(ids) < 10:  # too few readable sources: the example photos stand in
            examples = example_images()
            v_orig = np.vstack([v_orig, encoder.encode(examples)])
            edited += encode_copies(encoder, examples, copies_per_source(len(ids) + len(examples)), seed)
            ids += [-1] * len(examples)
        positive, negative = _pairs(encoder, faiss_index, rerank_rows, ids, v_orig, edited)
        if len(negative) < 20:  # a tiny collection: unrelated pairs among the example photos help out
            ex = encoder.encode(example_images())
            negative += [float(np.sum((a - b) ** 2)) for i, a in enumerate(ex) for b in ex[i + 1 :]]
        return fit(positive, np.array(negative))


def _more_sources(
    encoder: Encoder, items: Sequence[tuple[int, str]], have: set[int], seed: int, workers, scheduler, st
) -> list[tuple[int, np.ndarray]]:
    """(id, copies' vectors) of random indexed images read on the executor, until SAMPLE - len(have)
    of them could be read here (vectors may have been made elsewhere)."""
    rng = np.random.default_rng(seed)
    candidates = (i for i in rng.permutation(len(items)) if items[i][0] not in have)
    order = list(itertools.islice(candidates, 5 * SAMPLE))
    work = functools.partial(encode_copies, copies=copies_per_source(min(len(items), SAMPLE)), seed=seed)
    found: list[tuple[int, np.ndarray]] = []
    tried = 0
    while len(have) + len(found) < SAMPLE and tried < len(order):
        chosen = order[tried : tried + SAMPLE - len(have) - len(found)]
        tried += len(chosen)
        starts = range(0, len(chosen), COPY_BATCH)
        tasks = [(n, [items[i][1] for i in chosen[s : s + COPY_BATCH]]) for n, s in enumerate(starts)]
        here = workers if len(tasks) > 1 else 0
        done = dict(executors.run(work, encoder, tasks, here, scheduler, on_crash=lambda path: [None]))
        for i, v in zip(chosen, (v for n, _ in tasks for v in done[n])):
            if v is not None:
                found.append((items[i][0], v))
                st.update()
    return found


def _pairs(
    encoder: Encoder, faiss_index, rerank_rows, ids: list[int], v_orig: np.ndarray, edited: list[np.ndarray]
) -> tuple[np.ndarray, list[float]]:
    """Positive distances (copy → its source) and negative ones (copy → another image that is not
    a copy of the source) of the sources ``ids`` (vectors ``v_orig``) and their copies (query
    rows), measured as a search measures them (``matching.py``)."""
    from . import ivf, matching

    owner = np.repeat(np.arange(len(ids)), [len(v) for v in edited])
    copies = Queries.from_rows(np.vstack(edited))
    cdim, w = encoder.colour_dim, encoder.config.colour_weight
    positive = matching.distances(copies, v_orig[owner], cdim, w)
    radius = float(np.quantile(positive, EXCLUDE_QUANTILE))
    d_orig, i_orig = ivf.search(faiss_index, v_orig, K + 1, rerank_rows)
    same = [
        {sid} | {int(i) for d, i in zip(d_orig[o], i_orig[o]) if i >= 0 and d <= radius}
        for o, sid in enumerate(ids)
    ]
    dist, hit, _ = matching.search(faiss_index, copies, K + 1, cdim, w, rerank_rows)
    negative = []
    for q, o in enumerate(owner):
        negative += [float(d) for d, i in zip(dist[q], hit[q]) if i >= 0 and int(i) not in same[o]][:K]
    return positive, negative

"""Retrieval and calibration metrics on labelled sets in the ``groups.csv`` format (path,group).

Protocols follow each set's SOURCE.md: every image (or those in queries.csv) queries the whole set;
mAP, recall@1 and precision@10 exclude the query itself, the UKBench N-S score counts it (top 4).
``evaluate_index`` measures the engine as users get it (a real build, ``Index.search_many``, the
calibrated %); ``baseline_metrics`` gives what a user would otherwise pick (pHash, a colour histogram).
Needs the ``bench`` extra (scikit-learn's average precision, imagehash): ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .calibration import reliability

if TYPE_CHECKING:
    from .encoder import EncoderConfig


@dataclass
class LabelledSet:
    root: Path
    paths: list[str]  # absolute
    groups: np.ndarray  # int group id per path
    queries: np.ndarray  # indices into paths
    kinds: list[str] | None = None  # per path, the main edit of a copy (transforms.csv), if known

    @property
    def name(self) -> str:
        return self.root.name


def load_labelled_set(root: str | os.PathLike) -> LabelledSet:
    """Read ``groups.csv`` (and ``queries.csv`` if present) from a labelled set folder."""
    root = Path(root)
    groups_file = root / "groups.csv"
    if not groups_file.is_file():
        raise FileNotFoundError(f"{root}: no groups.csv (expected columns path,group)")
    with open(groups_file, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0] or "group" not in rows[0]:
        raise ValueError(f"{groups_file}: expected a header 'path,group'")
    paths = [str(root / r["path"]) for r in rows]
    names = {g: i for i, g in enumerate(dict.fromkeys(r["group"] for r in rows))}
    groups = np.array([names[r["group"]] for r in rows])
    index = {p: i for i, p in enumerate(paths)}
    qfile = root / "queries.csv"
    if qfile.is_file():
        with open(qfile, newline="") as f:
            queries = np.array([index[str(root / r["path"])] for r in csv.DictReader(f)])
    else:
        queries = np.arange(len(paths))
    kinds = None
    tfile = root / "transforms.csv"
    if tfile.is_file():
        with open(tfile, newline="") as f:
            edit = {str(root / r["path"]): r["transform"].split("+")[0] for r in csv.DictReader(f)}
        kinds = [edit.get(p, "") for p in paths]
    return LabelledSet(root, paths, groups, queries, kinds)


def ranking(vectors: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact ranking of the whole set for each query: (order, distances), both (q, n)."""
    q = vectors[queries]
    d = (q * q).sum(1)[:, None] + (vectors * vectors).sum(1)[None, :] - 2 * q @ vectors.T
    order = np.argsort(d, axis=1, kind="stable")
    return order, np.take_along_axis(d, order, axis=1)


def per_query(order: np.ndarray, groups: np.ndarray, queries: np.ndarray) -> dict[str, np.ndarray]:
    """Each query's AP (NaN where it has nothing relevant), recall@1, P@10, P@20 (query excluded)
    and N-S score (top 4, query included)."""
    from sklearn.metrics import average_precision_score

    out: dict[str, list] = {"AP": [], "recall@1": [], "P@10": [], "P@20": [], "N-S": []}
    for qi, row in zip(queries, order):
        rel = groups[row] == groups[qi]
        out["N-S"].append(rel[:4].sum())
        rel_x = rel[row != qi]
        n = len(rel_x)
        out["AP"].append(average_precision_score(rel_x, np.arange(n, 0, -1)) if rel_x.any() else np.nan)
        out["recall@1"].append(rel_x[0])
        out["P@10"].append(rel_x[:10].mean())
        out["P@20"].append(rel_x[:20].mean())
    return {k: np.asarray(v, float) for k, v in out.items()}


def _summary(scores: dict[str, np.ndarray], rows: np.ndarray | slice = slice(None)) -> dict[str, float]:
    ap = scores["AP"][rows]
    summary = {"mAP": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")}
    return summary | {k: float(np.mean(v[rows])) for k, v in scores.items() if k != "AP"}


def retrieval_metrics(order: np.ndarray, groups: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """mAP, recall@1, P@10, P@20 (query excluded) and the N-S score (top 4, query included)."""
    return _summary(per_query(order, groups, queries))


def metrics_by_kind(
    order: np.ndarray, groups: np.ndarray, queries: np.ndarray, kinds: list[str]
) -> dict[str, dict[str, float]]:
    """``retrieval_metrics`` of the queries of each kind of edit (and "all"), with their count."""
    scores = per_query(order, groups, queries)
    of_query = np.array([kinds[q] for q in queries])
    out = {"all": {**_summary(scores), "n": len(queries)}}
    for kind in sorted(set(of_query)):
        rows = of_query == kind
        out[kind] = {**_summary(scores, rows), "n": int(rows.sum())}
    return out


def _order_from_distances(dist: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rank by distance, breaking ties at random: pHash has only 65 distinct distances, and a stable
    sort would hand tied images the order of groups.csv (where groups are contiguous)."""
    tie = np.random.default_rng(seed).random(dist.shape)
    return np.lexsort((tie, dist), axis=1)


def _full_order(ranked: list[int], n: int) -> np.ndarray:
    """A ranking of all n images: the engine's hits, then whatever it did not return (skipped files) last."""
    seen = np.zeros(n, bool)
    seen[ranked] = True
    return np.r_[np.asarray(ranked, int), np.flatnonzero(~seen)]


def evaluate_index(
    data: LabelledSet,
    index_dir: str | os.PathLike,
    workers: int | None = None,
    quiet: bool = True,
    config: EncoderConfig | None = None,
) -> dict:
    """Build a real index over the set and rank every query through ``Index.search_many``
    (``evaluate_search``). Same encoder training (with ``config``, default settings if None) and
    calibration fit as a user's build; the result also has the build's report."""
    from .pipeline import build

    index = build(data.paths, index_dir, workers=workers, quiet=quiet, config=config)
    report = index.last_build
    return {
        **evaluate_search(data, index),
        "indexed": report.indexed,
        "skipped": len(report.skipped),
        "build_seconds": report.seconds,
    }


def evaluate_search(data: LabelledSet, index, verify: bool = False) -> dict:
    """Rank every query of the set through ``index.search_many`` (with ``verify``): the retrieval
    metrics (by kind of edit where the set names them), and the reliability table + ECE of the
    calibrated % over the top-10 hits of every query (the query itself excluded; relevant = same
    group). Also the seconds per query."""
    import time

    n = len(data.paths)
    position = {os.path.abspath(p): i for i, p in enumerate(data.paths)}
    t0 = time.perf_counter()
    results = index.search_many([data.paths[q] for q in data.queries], k=n, verify=verify)
    seconds = (time.perf_counter() - t0) / max(1, len(data.queries))
    order = np.stack([_full_order([position[h.path] for h in hits], n) for hits in results])
    similarity, distance, relevant = [], [], []
    for qi, hits in zip(data.queries, results):
        top = [h for h in hits if position[h.path] != qi][:10]
        similarity += [h.similarity for h in top]
        distance += [h.evidence for h in top]
        relevant += [data.groups[position[h.path]] == data.groups[qi] for h in top]
    table, ece = reliability(np.array(similarity), np.array(relevant))
    return {
        **retrieval_metrics(order, data.groups, data.queries),
        "by_kind": metrics_by_kind(order, data.groups, data.queries, data.kinds) if data.kinds else None,
        "reliability": table,
        "ECE": ece,
        "top10": (np.array(distance), np.array(relevant), np.array(similarity)),
        "seconds_per_query": seconds,
    }


def calibration_spread(
    index_dir: str | os.PathLike,
    top10: tuple[np.ndarray, np.ndarray],
    seeds: Sequence[int] = range(1, 6),
    workers: int | None = None,
) -> list[float]:
    """ECE of the same hits (``top10`` = evidence, relevant) under calibrations refitted on other
    random draws of sources and edits (the build used seed 0): how much the stated percentages
    depend on which images the calibration happened to draw. The hits are of indexed queries,
    which find themselves, so the main curve states them all (``Calibration.percent_of_hits``)."""
    from .search import open_index

    ix = open_index(index_dir)
    distance, relevant = top10[:2]
    return [reliability(refit(ix, s, workers).percent_at(distance), relevant)[1] for s in seeds]


def refit(index, seed: int, workers: int | None = None):
    """The calibration an opened index would have had from another draw of sources and edits."""
    from . import ivf, pathnames
    from .calibrate import fit_calibration

    meta = index.metadata()
    items = list(zip(meta["id"].to_pylist(), pathnames.of(meta), meta["sha1"].to_pylist()))
    full = ivf.load(index.version.file("index"), mmap=False)
    return fit_calibration(
        index.encoder, full, items, True, seed=seed, workers=workers, rerank_rows=index.rerank_rows
    )


def phash_bits(paths: Sequence[str]) -> np.ndarray:
    """imagehash pHash (64 bits) of each file as an (n, 64) bool array, decoded the way its users do (PIL)."""
    import imagehash
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(imagehash.phash(im).hash.ravel())
    return np.array(out, bool)


def hsv_histograms(paths: Sequence[str], bins: tuple[int, int, int] = (8, 12, 3)) -> np.ndarray:
    """Plain global HSV histogram per file (cv2.imread, full size), each summing to 1; (n, bins) float32."""
    import cv2

    out = []
    for p in paths:
        hsv = cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], None, list(bins), [0, 180, 0, 256, 0, 256]).ravel()
        out.append(h / max(h.sum(), 1.0))
    return np.array(out, np.float32)


def baseline_metrics(data: LabelledSet) -> dict[str, dict[str, float]]:
    """Retrieval metrics of pHash (Hamming distance) and of a global HSV histogram (symmetric
    chi-square), by kind of edit too where the set names them."""
    import cv2

    bits = phash_bits(data.paths).astype(np.float32)
    q = bits[data.queries]
    hamming = q @ (1 - bits).T + (1 - q) @ bits.T
    hist = hsv_histograms(data.paths)
    chi2 = np.array(
        [[cv2.compareHist(hist[i], h, cv2.HISTCMP_CHISQR_ALT) for h in hist] for i in data.queries]
    )
    out = {}
    for name, dist in (("pHash", hamming), ("colour-hist", chi2)):
        order = _order_from_distances(dist)
        out[name] = retrieval_metrics(order, data.groups, data.queries)
        if data.kinds:
            out[name]["by_kind"] = metrics_by_kind(order, data.groups, data.queries, data.kinds)
    return out

"""Fitting the calibration: from edited copies when an index is built, or from a user's labels.

At build time about ``SAMPLE`` indexed images and the reference photos (``reference_photos``)
are sources. Each gets edited copies of the kind found in the wild (``edits.copy_edit``: one
edit, sometimes a milder second), seeded by the file's content, so neither renaming files nor
the worker, batch or stage that makes them changes them. A build makes them in its encode stage
from the pixels it has decoded anyway (``CopyPlan``, the encoder's ``derive``); where fewer than
half the sample comes that way (a build from vectors, a refit), more sources are read on the
executor (``encode_copies``).

Each copy then queries the index as a search would (``matching.py``), with the reference photos'
vectors beside it. Its evidence against its source (the distance over the copy's scale, see
``calibration.py``) is a positive, and so is its evidence against another copy of the same
source; its other top-10 hits are negatives, except the source's own duplicates in the
collection (evidence against the source under ``NEAR``: a collection with duplicates
must not teach that duplicates are non-matches). An isotonic regression of "same
picture" on the evidence, with positives and negatives weighed to a share of ``PRIOR`` true
matches among the hits, gives the curve.

The lone curve (``calibration.py``) is fitted on the pairs in which the hit is the copy's only near
one: its source where nothing else indexed is near the copy, and the copy's first non-matches when
its relatives (the source's duplicates, and whatever is as near to the copy as copies are) are
taken out of its hits, its scale measured again: the copy as an unrelated photo. Each source is a
stranger too, as it is, its relatives taken out likewise: an unrelated photo is most often an
unedited one, which lies nearer its nearest images than an edited copy does. Each copy counts once
as a copy and once as a stranger, half of that weight its own and half its source's, the pairs
within each unweighed. The lone curve keeps a knot at either side of each step of its fit: its two
kinds barely overlap, so knots at quantiles leave gaps where the fit steps down, and an unrelated
photo's nearest image falls in them (bench/TUNING.md).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import executors
from .calibration import NEAR, RANK, Calibration, gap_ratios, only_near, query_scales, reliability
from .edits import copy_edit
from .encoder import Encoder, Queries, example_images
from .images import FileInfo, ImageError, to_pixels
from .images import load as load_image
from .stages import stage

SAMPLE = 200
COPIES = 800  # edited copies of the sources in all, about
MIN_COPIES = 4  # of each source
K = 10  # hits per copy that can be negatives
COPY_BATCH = 8  # sources per executor task
#: The share of true matches the fit assumes among a query's top hits (bench/TUNING.md).
PRIOR = 0.5
KNOTS = 64
MIN_PAIRS = 10  # of each kind, to fit a curve on


def reference_photos() -> list[str]:
    """The photos every calibration takes as sources and as images for a query's scale, beside the
    collection: the examples and the references (``references/SOURCES.md``). They set a small
    index's scale, so more of them, of varied scenes, bring it nearer a large one's."""
    folder = Path(__file__).parent / "references"
    return example_images() + sorted(str(p) for p in folder.glob("*.jpg"))


def source_key(info: FileInfo | None, path: str) -> bytes:
    """What a source's choice and edits hang on: its content where it is known, else its path."""
    return (
        bytes.fromhex(info.sha1)
        if info is not None and info.sha1
        else path.encode("utf-8", "surrogateescape")
    )


def edited_copies(pixels: np.ndarray, key: bytes, copies: int, seed: int) -> list[np.ndarray]:
    """``copies`` copy-like edits of a file's decoded pixels; they depend only on its key and ``seed``."""
    digest = hashlib.blake2b(key, digest_size=8).digest()
    rng = np.random.default_rng([seed, int.from_bytes(digest, "little")])
    return [copy_edit(pixels, rng) for _ in range(copies)]


@dataclass(frozen=True)
class CopyPlan:
    """Which files of a build are sources (about ``rate`` of them), with how many copies each. The
    choice hangs on a keyed hash of the file's content, so it is the same whatever the names,
    batches, workers or restarts. Called as the encoder's ``derive``, it makes a source's copies."""

    rate: float
    copies: int
    seed: int = 0

    def wants(self, key: bytes) -> bool:
        if self.rate >= 1:
            return True
        h = hashlib.blake2b(key, digest_size=8, key=self.seed.to_bytes(8, "little"))
        return int.from_bytes(h.digest(), "little") < self.rate * 2**64

    def __call__(self, info: FileInfo, pixels: np.ndarray) -> list[np.ndarray]:
        key = source_key(info, info.path)
        return edited_copies(pixels, key, self.copies, self.seed) if self.wants(key) else []


def copies_per_source(sources: int) -> int:
    """Edited copies per source: four at least (a copy and another copy of the same photo are a
    positive too; with two, which sources were drawn moved the ECE by 2 points: bench/TUNING.md),
    more in a small collection, for about COPIES in all."""
    return max(MIN_COPIES, min(10, -(-COPIES // max(1, sources))))


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
            pixels, info = load_image(path, side)
        except ImageError:
            read.append(False)
            continue
        edited += [to_pixels(e, side) for e in edited_copies(pixels, source_key(info, path), copies, seed)]
        read.append(True)
    rows = iter(np.split(encoder.queries(edited).rows(), np.arange(copies, len(edited), copies)))
    return [next(rows) if ok else None for ok in read]


def fit(
    positive: np.ndarray,
    negative: np.ndarray,
    prior: float | None = PRIOR,
    knots: int = KNOTS,
    positive_weight: np.ndarray | None = None,
    knots_per_class: bool = False,
    negative_weight: np.ndarray | None = None,
    steps: bool = False,
) -> Calibration:
    """P(same picture | evidence) from the evidence of true matches and of non-matches, each of
    its weight (default 1), the two kinds weighed to a share ``prior`` of true matches (None: as
    their weights have it). The knots are at quantiles of all the evidence, or of each kind apart
    (``knots_per_class``), so that a few positives among many negatives get knots too; with
    ``steps``, also at either side of each step of the fit, so that no straight segment between two
    far knots stands for a step (where a fit's data are sparse, its steps are far apart)."""
    from scipy.optimize import isotonic_regression  # half the import time of scikit-learn's

    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("calibration needs both matching and non-matching pairs")
    x = np.r_[positive, negative]
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    own = np.ones(len(positive)) if positive_weight is None else np.asarray(positive_weight, float)
    w_neg = np.ones(len(negative)) if negative_weight is None else np.asarray(negative_weight, float)
    w_pos = own if prior is None else own * prior / (1 - prior) * w_neg.sum() / own.sum()
    weight = np.r_[w_pos, w_neg]
    at, where = np.unique(x, return_inverse=True)  # tied values: one weighted point
    total = np.bincount(where, weight)
    fitted = isotonic_regression(np.bincount(where, weight * y) / total, weights=total, increasing=False).x
    top = float(x.max()) * 1.05 + 1e-6
    spread = [positive, negative] if knots_per_class else [x]
    at_quantiles = [np.quantile(v, np.linspace(0, 1, knots // len(spread))) for v in spread]
    changes = np.flatnonzero(np.diff(fitted)) if steps else np.zeros(0, int)
    grid = np.unique(np.concatenate([[0.0], *at_quantiles, at[changes], at[changes + 1], [top]]))
    prob = np.interp(grid, at, fitted)  # linear between fitted points, flat beyond them
    prob[0] = 1.0  # the same image is 100%
    prob = np.minimum.accumulate(prob)
    bins = np.linspace(0, top, 41)
    fitted_on = {
        "positives": len(positive),
        "negatives": len(negative),
        "prior": prior,
        "histogram_edges": bins.round(4).tolist(),
        "positive_histogram": np.histogram(positive, bins)[0].tolist(),
        "negative_histogram": np.histogram(negative, bins)[0].tolist(),
    }
    return Calibration(grid, prob, fitted_on)


def fit_calibration(
    encoder: Encoder,
    faiss_index,
    items: Sequence[tuple[int, str, str | None]],
    quiet: bool,
    seed: int = 0,
    workers: int | None = None,
    scheduler=None,
    rerank_rows=None,
    copies: dict[int, np.ndarray] | None = None,
) -> Calibration:
    """The calibration of an index: ``items`` are (id, path, sha1) of its images, ``copies`` (id →
    query rows) the copies its encode stage made, ``rerank_rows`` a PQ index's re-ranking rows.

    The sources' vectors come from the index. The reference photos (``reference_photos``) are
    sources too: not in the collection, their copies meet it as an unknown photo's do (with them,
    unrelated photos' best hits in 20-image indexes and the moves of a pair between a 50-image part
    and the whole copy set went down, bench/RESULTS.md). Where the images cannot be read from here
    (vectors made on another machine), they are the only sources.
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
        v_orig = (
            ivf.reconstruct(faiss_index, ids, rerank_rows) if ids else np.zeros((0, encoder.dim), np.float32)
        )
        references = reference_photos()
        background = encoder.encode(references)
        v_orig = np.vstack([v_orig, background])  # the reference photos are sources too, the last ones
        edited += encode_copies(encoder, references, copies_per_source(len(ids) + len(references)), seed)
        ids += [-1] * len(references)
        (positive, weight, negative), (lone_positive, lone_negative, lone_weight) = _pairs(
            encoder, faiss_index, rerank_rows, ids, v_orig, edited, background
        )
        cal = fit(positive, negative, positive_weight=weight)
        if min(len(lone_positive), len(lone_negative)) >= MIN_PAIRS:  # else the main curve serves all
            lone = fit(
                lone_positive,
                lone_negative,
                prior=None,
                knots_per_class=True,
                negative_weight=lone_weight,
                steps=True,
            )
            cal.lone = (lone.knots, lone.probability)
            cal.fitted_on["lone"] = {k: lone.fitted_on[k] for k in ("positives", "negatives")}
        cal.background = background
        cal.fitted_on["source"] = "edited copies"
        return cal


def _more_sources(
    encoder: Encoder,
    items: Sequence[tuple[int, str, str | None]],
    have: set[int],
    seed: int,
    workers,
    scheduler,
    st,
) -> list[tuple[int, np.ndarray]]:
    """(id, copies' rows) of indexed images read on the executor, in an order set by their
    content, until SAMPLE - len(have) of them could be read here (vectors may come from elsewhere)."""
    plan = CopyPlan(1.0, 1, seed)

    def rank(item: tuple[int, str, str | None]) -> bytes:
        key = bytes.fromhex(item[2]) if item[2] else item[1].encode("utf-8", "surrogateescape")
        return hashlib.blake2b(key, digest_size=8, key=plan.seed.to_bytes(8, "little")).digest()

    candidates = (it for it in sorted(items, key=rank) if it[0] not in have)
    order = list(itertools.islice(candidates, 5 * SAMPLE))
    work = functools.partial(encode_copies, copies=copies_per_source(min(len(items), SAMPLE)), seed=seed)
    found: list[tuple[int, np.ndarray]] = []
    tried = 0
    while len(have) + len(found) < SAMPLE and tried < len(order):
        chosen = order[tried : tried + SAMPLE - len(have) - len(found)]
        tried += len(chosen)
        starts = range(0, len(chosen), COPY_BATCH)
        tasks = [(n, [it[1] for it in chosen[s : s + COPY_BATCH]]) for n, s in enumerate(starts)]
        here = workers if len(tasks) > 1 else 0
        done = dict(executors.run(work, encoder, tasks, here, scheduler, on_crash=lambda path: [None]))
        for it, v in zip(chosen, (v for n, _ in tasks for v in done[n])):
            if v is not None:
                found.append((it[0], v))
                st.update()
    return found


def _pairs(
    encoder: Encoder,
    faiss_index,
    rerank_rows,
    ids: list[int],
    v_orig: np.ndarray,
    edited: list[np.ndarray],
    background: np.ndarray,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The evidence of the positive pairs (a copy and its source; a copy and another copy of the
    same source) with their weights, and of the negative ones (a copy and another image, indexed or
    a reference photo, that is neither), measured as a search measures it (``matching.py``,
    ``query_scales``); then the positives, negatives and negatives' weights of the lone curve
    (module docstring). A copy's pairs with its siblings weigh as much as its pair with its source,
    however many copies a source has, so the fit's mix of easy and hard positives does not depend
    on the collection's size."""
    from . import matching

    owner = np.repeat(np.arange(len(ids)), [len(v) for v in edited])
    copies = Queries.from_rows(np.vstack(edited))
    cdim, w = encoder.colour_dim, encoder.config.colour_weight
    shown = max(K + 1, RANK)
    depth = 2 * shown  # room for the scale of a copy whose relatives are taken out
    dist, hit, _ = matching.search(faiss_index, copies, depth, cdim, w, rerank_rows)
    dist = np.where(hit >= 0, dist, np.inf)
    to_refs = matching.distance_matrix(copies, background, cdim, w)
    scale = query_scales(dist, to_refs)
    same, same_refs = _duplicates(faiss_index, rerank_rows, ids, v_orig, background)
    source = matching.distances(copies, v_orig[owner], cdim, w) / scale
    positive, weight = list(source), [1.0] * len(source)
    siblings = matching.distance_matrix(copies, copies.vectors, cdim, w) / scale[:, None]
    for q, o in enumerate(owner):
        others = [siblings[q, j] for j in np.flatnonzero(owner == o) if j != q]
        positive += others
        weight += [1.0 / max(1, len(others))] * len(others)  # a source may have one copy only
    negative, lone_positive, lone_negative, lone_weight = [], [], [], []
    for q, o in enumerate(owner):
        indexed = hit[q] >= 0
        near_others = indexed & (dist[q] < NEAR * scale[q]) & (hit[q] != ids[o])
        other = indexed & ~np.isin(hit[q], list(same[o]))
        refs = to_refs[q][~same_refs[o]]
        top = np.sort(np.r_[dist[q][:shown][other[:shown]], refs])  # among the hits a search shows
        negative += list(top[:K] / scale[q])
        strange = dist[q][other & ~near_others]  # the copy with no relative indexed
        if not near_others.any():
            lone_positive.append(source[q] * gap_ratios(source[q] * scale[q], strange)[0, 0])
        found = _as_stranger(strange, refs)
        lone_negative += found
        lone_weight += [0.5] * len(found)
    as_sources = Queries(v_orig, v_orig, np.zeros(len(v_orig), bool))  # straight, in colour: no pixels here
    s_dist, s_hit, _ = matching.search(faiss_index, as_sources, depth, cdim, w, rerank_rows)
    s_dist = np.where(s_hit >= 0, s_dist, np.inf)
    s_refs = matching.distance_matrix(as_sources, background, cdim, w)
    for o in range(len(ids)):  # each source as a stranger too, as it is, its relatives taken out
        other = (s_hit[o] >= 0) & ~np.isin(s_hit[o], list(same[o]))
        refs = s_refs[o][~same_refs[o]]
        own_scale = query_scales(np.r_[s_dist[o][other], refs][None, :], None)[0]
        found = _as_stranger(s_dist[o][other & (s_dist[o] >= NEAR * own_scale)], refs)
        lone_negative += found
        lone_weight += [0.5 * np.count_nonzero(owner == o)] * len(found)  # as much as its copies
    return (
        (np.array(positive), np.array(weight), np.array(negative)),
        (np.array(lone_positive), np.array(lone_negative), np.array(lone_weight)),
    )


def _as_stranger(strange: np.ndarray, refs: np.ndarray) -> list[float]:
    """The lone curve's evidence of a query's hits with no relative indexed, at distances
    ``strange`` from it (and ``refs`` from the reference photos): each hit that is its only near one
    (all, where none is near), its evidence times its gap."""
    found = np.sort(np.r_[strange, refs])
    evidence = found[:K] / query_scales(found[None, :], None)[0]
    return list((evidence * gap_ratios(found[:K], strange)[0])[only_near(evidence)])


def _duplicates(
    faiss_index, rerank_rows, ids: list[int], v_orig: np.ndarray, background: np.ndarray
) -> tuple[list[set], np.ndarray]:
    """Each source's id and those of the indexed images that are, to the source itself, as near as
    copies are (evidence under NEAR): its duplicates in the collection, which must not be taught as
    non-matches; and which reference photos are the source itself (a reference photo, or one the
    collection holds)."""
    from . import ivf

    d, found = ivf.search(faiss_index, v_orig, RANK + 1, rerank_rows)
    own = found == np.asarray(ids)[:, None]
    d = np.where((found >= 0) & ~own, d, np.inf)
    refs = ((v_orig[:, None, :].astype(np.float64) - background[None, :, :]) ** 2).sum(-1)
    itself = refs <= 1e-9
    scale = query_scales(d, np.where(itself, np.inf, refs))  # a photo is not its own neighbour
    indexed = [
        {sid} | {int(i) for dd, i in zip(d[o], found[o]) if np.isfinite(dd) and dd <= NEAR * scale[o]}
        for o, sid in enumerate(ids)
    ]
    return indexed, itself


# ---- a user's labels --------------------------------------------------------------------------

HELD_OUT = 0.2  # of the labels, kept out of the fit to measure it


@dataclass
class Labels:
    """A user's labels: images in groups (``path,group``: same group, same thing; a group lists
    all its images) or pairs (``a,b,same``). Paths relative to the labels file's folder, or
    absolute."""

    file: str
    groups: dict[str, str] | None = None
    pairs: list[tuple[str, str, bool]] | None = None


def read_labels(path: str | os.PathLike) -> Labels:
    """The labels in a CSV file with the header ``path,group`` or ``a,b,same``; ValueError naming
    the file and the line when it is not one."""
    import csv

    f = Path(path).expanduser()
    try:
        with open(f, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
    except (OSError, csv.Error) as e:
        raise ValueError(f"{f}: cannot read labels ({e})") from None
    base = f.resolve().parent
    where = lambda p: os.path.abspath(base / os.path.expanduser(p))  # noqa: E731
    columns = set(reader.fieldnames or ())
    if columns and not rows:
        raise ValueError(f"{f}: no labels under its header")
    if {"path", "group"} <= columns:
        return Labels(str(f), groups={where(r["path"]): r["group"] for r in rows if r["path"]})
    if {"a", "b", "same"} <= columns:
        pairs = []
        for line, r in enumerate(rows, 2):
            same = str(r["same"]).strip().lower()
            if same not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(
                    f"{f}:{line}: 'same' must be 1 or 0 (or true/false, yes/no), not {r['same']!r}"
                )
            pairs.append((where(r["a"]), where(r["b"]), same in ("1", "true", "yes")))
        return Labels(str(f), pairs=pairs)
    found = ", ".join(sorted(columns)) or "nothing"
    raise ValueError(f"{f}: labels need the header 'path,group' or 'a,b,same' (found {found})")


def fit_labels(index, labels: Labels, seed: int = 0) -> Calibration:
    """A curve of "same thing" (as the labels mean it) on the evidence of labelled pairs among the
    labelled images' top hits (or of the labelled pairs), fitted on most of them; the rest measure
    it (``fitted_on["held_out"]``). ValueError, and nothing fitted, when the labels cannot teach."""
    from . import pathnames

    meta = index.metadata()
    id_of = dict(zip(pathnames.of(meta), meta["id"].to_pylist()))
    named = (
        set(labels.groups) if labels.groups is not None else {p for a, b, _ in labels.pairs for p in (a, b)}
    )
    unknown = sorted(p for p in named if p not in id_of)
    if unknown:
        are = "images are" if len(unknown) > 1 else "image is"
        raise ValueError(
            f"{labels.file}: {len(unknown)} labelled {are} not in the index (first: {unknown[0]}); "
            "label indexed images only"
        )
    rng = np.random.default_rng(seed)
    if labels.groups is not None:
        names = sorted(set(labels.groups.values()))
        held = (
            set(rng.choice(names, max(1, round(HELD_OUT * len(names))), replace=False))
            if len(names) > 1
            else set()
        )
        sets = _group_pairs(index, labels.groups, id_of, held)
    else:
        held_rows = rng.random(len(labels.pairs)) < HELD_OUT
        sets = _listed_pairs(index, labels.pairs, id_of, held_rows)
    (fit_e, fit_y), (test_e, test_y) = sets
    if fit_y.sum() < MIN_PAIRS or (~fit_y).sum() < MIN_PAIRS:
        raise ValueError(
            f"{labels.file}: too few pairs to fit on ({int(fit_y.sum())} alike and {int((~fit_y).sum())} "
            f"not, need {MIN_PAIRS} of each): label more images, of more than one kind"
        )
    cal = fit(fit_e[fit_y], fit_e[~fit_y], prior=None)
    cal.background, cal.rank = index.calibration.background, index.calibration.rank
    if cal.background is None:
        cal.background = index.encoder.encode(reference_photos())
    held_out = {"pairs": len(test_y)}
    if len(test_y) and 0 < test_y.sum() < len(test_y):
        stated = cal.percent_at(test_e)
        held_out["ECE"] = round(reliability(stated, test_y)[1], 4)
        for t in (70, 90):
            s = stated >= t
            held_out[f"precision_at_{t}"] = round(float(test_y[s].mean()), 4) if s.any() else None
            held_out[f"recall_at_{t}"] = round(float(s[test_y].mean()), 4)
    cal.fitted_on |= {
        "source": "labels",
        "labels": labels.file,
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "held_out": held_out,
    }
    return cal


def _group_pairs(index, groups: dict[str, str], id_of: dict, held: set) -> tuple:
    """(evidence, alike) of each labelled image's top ten hits, for the images of groups not
    ``held`` out, and for those of the held-out groups. A group is all the images of its kind, so
    a hit the labels leave out is in none of them: not alike. (Leaving such hits out instead
    inflates the share of alike hits the curve learns: on half of the Holidays groups, held-out
    ECE 8.6 points, against 3.3; bench/RESULTS.md.)"""
    group_of = {id_of[p]: g for p, g in groups.items()}
    ids = np.array(sorted(group_of))
    hits = index.search_vectors(index.vectors(ids), k=11)
    out = {True: ([], []), False: ([], [])}
    for i, found in zip(ids, hits):
        bucket = out[group_of[i] in held]
        for h in [h for h in found if h.id != i][:10]:
            bucket[0].append(h.evidence)
            bucket[1].append(group_of.get(h.id) == group_of[i])
    return tuple((np.array(e, float), np.array(y, bool)) for e, y in (out[False], out[True]))


def _listed_pairs(index, pairs: list[tuple[str, str, bool]], id_of: dict, held: np.ndarray) -> tuple:
    """(evidence, alike) of the listed pairs: b as a hit of a, the ones not ``held`` out and the rest."""
    a = np.array([id_of[x] for x, _, _ in pairs])
    b = np.array([id_of[y] for _, y, _ in pairs])
    same = np.array([s for _, _, s in pairs], bool)
    xa, xb = index.vectors(a), index.vectors(b)
    evidence = ((xa - xb) ** 2).sum(1) / index.scales(xa, exclude=a)
    return (evidence[~held], same[~held]), (evidence[held], same[held])

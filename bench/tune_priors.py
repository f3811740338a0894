"""Whose share of copies a verified hit's percentage should assume: the fit's, the collection's or
the query's.

    python -m bench.tune_priors [--data /work/shared/data]

A verified hit's percentage (``verify.adjusted``) assumes the share of copies among verified hits
that the fit's pairs had (``bench/tune_agreement.py``). The copy set holds almost no other shots,
the make-up collection (the copy set with the other shared photos) many, so each might want its
own. Compared, over the top-10 hits of the copy set's queries in both collections (checked as
``bench/tune_agreement.py`` checks them, before verification reorders), the percentage with:

- the fit's share (what vecsearch does);
- the collection's share, estimated from the verified top-10 of 100 random indexed images: the
  share under which the fit's posteriors average to it (the EM of Saerens, Latinne and
  Decaestecker 2002, drawn towards the fit's share by 20 pairs);
- the query's own share, the same over its own verified hits (drawn towards the fit's by 5);
- a logistic fit with the query's other verified hits beside the agreement and the residual (the
  best of their agreements, and whether there is one), on the pairs of ``bench/tune_agreement.py``.

The make-up collection is not in any fit. bench/TUNING.md has the figures.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

import vecsearch
from bench import stability
from bench.tune_agreement import WORK, checked_hits, features, verified
from bench.tune_agreement import pairs as fit_pairs
from vecsearch import verify
from vecsearch.calibration import reliability
from vecsearch.evaluate import load_labelled_set

SAMPLE = 100  # random indexed images whose verified top-10 estimate a collection's share
HITS = 10


def collections(data_root: Path) -> dict[str, dict]:
    """For the copy set and the make-up collection: the copy queries' checked top-10 and the
    log-odds (``verify.verified_log_odds``) of the verified top-10 of SAMPLE random indexed images."""
    copies = load_labelled_set(data_root / "copies")
    made = stability.makeup_collection(data_root)
    sets = {
        "copies": (copies.paths, dict(zip(copies.paths, copies.groups)), made[2]),
        "make-up": made[:3],
    }
    out = {}
    for name, (paths, groups, queries) in sets.items():
        root = WORK / f"priors-{name}"
        shutil.rmtree(root, ignore_errors=True)
        index = vecsearch.build(paths, root, quiet=True)
        sample = list(np.random.default_rng(0).choice(paths, SAMPLE, replace=False))
        inside = checked_hits(index, sample, groups)
        ok = verified(inside)
        inside = verify.verified_log_odds(inside["agreement"][ok], inside["residual"][ok])
        out[name] = {"queries": checked_hits(index, queries, groups), "inside": inside}
    return out


def share(log_odds: np.ndarray, start: float, pseudo: float) -> float:
    """The share of copies among verified pairs of these log-odds (module docstring)."""
    fit_odds = start / (1 - start)
    odds = np.exp(log_odds)
    s = start
    for _ in range(200):
        moved = odds * (s / (1 - s)) / fit_odds
        s = float(np.clip(((moved / (1 + moved)).sum() + pseudo * start) / (len(odds) + pseudo), 0.01, 0.99))
    return s


def logit(p: float | np.ndarray) -> float | np.ndarray:
    return np.log(p / (1 - p))


def context(found: dict[str, np.ndarray]) -> np.ndarray:
    """atanh(agreement), the residual, the best atanh(agreement) of the query's other verified hits
    (0 if none), and whether it has one; rows as found's (HITS per query)."""
    ok = verified(found)
    own = features(
        {k: np.where(ok, v, 0.0) if k in ("agreement", "residual") else v for k, v in found.items()}
    )
    z = own[:, 0].reshape(-1, HITS)
    ok = ok.reshape(-1, HITS)
    best, any_other = np.zeros_like(z), np.zeros_like(z)
    for j in range(HITS):
        others = ok.copy()
        others[:, j] = False
        any_other[:, j] = others.any(1)
        best[:, j] = np.where(any_other[:, j], np.where(others, z, -np.inf).max(1), 0.0)
    return np.c_[z.ravel(), own[:, 1], best.ravel(), any_other.ravel()]


def percentages(found: dict[str, np.ndarray], agreeing_log_odds: np.ndarray) -> np.ndarray:
    """Each hit's percentage: ``verify.adjusted``, with the given log-odds where it verified with
    an agreement."""
    out = np.array(
        [verify.adjusted(p, verify.Check(int(n))) for p, n in zip(found["percent"], found["inliers"])]
    )
    ok = verified(found)
    out[ok] = 100.0 / (1.0 + np.exp(-agreeing_log_odds[ok]))
    return out


def figures(sim: np.ndarray, rel: np.ndarray) -> str:
    pr = stability.precision_recall(sim, rel)
    return f"ECE {reliability(sim, rel)[1]:.3f}, " + ", ".join(f"{k} {v:.3f}" for k, v in pr.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    args = ap.parse_args()
    cache, fit_cache = WORK / "priors-pairs.pkl", WORK / "agreement-pairs.pkl"
    if not cache.exists():
        cache.write_bytes(pickle.dumps(collections(args.data)))
    found = pickle.loads(cache.read_bytes())
    if not fit_cache.exists():
        fit_cache.write_bytes(pickle.dumps(fit_pairs(args.data)))
    fitted_on = pickle.loads(fit_cache.read_bytes())
    x = np.vstack([context(f)[verified(f)] for f in fitted_on.values()])
    y = np.concatenate([f["copy"][verified(f)] for f in fitted_on.values()])
    with_context = LogisticRegression(C=10.0).fit(x, y)
    print(
        f"the fit's share of copies: {y.mean():.3f}; "
        f"with the query's context: {with_context.coef_[0].round(3)} {with_context.intercept_[0]:+.3f}"
    )
    fit_share = float(y.mean())
    for name, f in found.items():
        q = f["queries"]
        ok = verified(q)
        base = verify.verified_log_odds(np.where(ok, q["agreement"], 0.0), np.where(ok, q["residual"], 0.0))
        own = share(f["inside"], fit_share, 20)
        per_query = np.repeat(
            [share(b[k], fit_share, 5) for b, k in zip(base.reshape(-1, HITS), ok.reshape(-1, HITS))],
            HITS,
        )
        schemes = {
            "the fit's share": base,
            f"the collection's share ({own:.3f}, {len(f['inside'])} pairs)": base
            + logit(own)
            - logit(fit_share),
            "the query's share": base + logit(per_query) - logit(fit_share),
            "the query's context beside the agreement": with_context.decision_function(context(q)),
        }
        for scheme, log_odds in schemes.items():
            print(f"{name}, {scheme}: {figures(percentages(q, log_odds), q['copy'])}")


if __name__ == "__main__":
    main()

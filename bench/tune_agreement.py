"""Fit how verification's agreement moves a verified hit's percentage (``verify.adjusted``).

    python -m bench.tune_agreement [--data /work/shared/data]

Two real builds: the copy set (its copies are the copies) and the UKBench and Holidays photos of
scenes the copy set did not take (their same-scene hits are other shots, not copies; the make-up
figures in bench/quality.py query other shots of the scenes it did take, so they are not in this
fit). Every query's top-10 hits (the query left out) are checked as ``verify=True`` would; the
verified ones with an agreement are the pairs. A logistic regression of "copy" on atanh(agreement)
and the inliers' residual gives the constants of ``verify.py`` (the agreement's clip: the one of
least held-out log loss among CLIPS); the held-out log loss of the agreement alone shows what the
residual adds, and the same fit with the vector's log-odds beside them shows that the vector adds
nothing once a pair is verified (bench/TUNING.md). The checked hits that fail give the failed
check's fit on the vector's log-odds.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

import vecsearch
from bench import stability
from vecsearch import verify
from vecsearch.evaluate import load_labelled_set
from vecsearch.images import to_pixels

WORK = Path(__file__).parent / "work"


def checked_hits(index, queries: list[str], group: dict[str, object]) -> dict[str, np.ndarray]:
    """Each query's top-10 hits (itself left out) with their vector percentage, check and truth."""
    side = index.encoder.config.max_side
    out: dict[str, list] = {"percent": [], "inliers": [], "agreement": [], "residual": [], "copy": []}
    for q, found in zip(queries, index.search_many(queries, k=11)):
        top = [h for h in found if h.path != q][:10]
        query = verify.QueryKeypoints(to_pixels(q, side))
        checks = verify.evidence(query, [(h.path, h.mirrored) for h in top], lambda p: to_pixels(p, side))
        out["percent"] += [h.similarity for h in top]
        out["inliers"] += [c.inliers for c in checks]
        out["agreement"] += [np.nan if c.agreement is None else c.agreement for c in checks]
        out["residual"] += [np.nan if c.residual is None else c.residual for c in checks]
        out["copy"] += [group[h.path] == group[q] for h in top]
    return {k: np.asarray(v) for k, v in out.items()}


def verified(found: dict[str, np.ndarray]) -> np.ndarray:
    """Which checked hits verified with an agreement: the pairs the fit is made on."""
    return (found["inliers"] >= verify.MIN_INLIERS) & np.isfinite(found["agreement"])


CLIPS = (0.985, 0.99, 0.993, 0.995, 0.996, 0.997, 0.998, 0.999)  # of the agreement, tried


def features(found: dict[str, np.ndarray], clip: float = verify.AGREEMENT_CLIP) -> np.ndarray:
    """atanh(agreement clipped to ``clip``), the residual and the vector's log-odds."""
    z = np.arctanh(np.clip(found["agreement"], -clip, clip))
    return np.c_[z, found["residual"], verify.vector_log_odds(found["percent"])]


def held_out_log_loss(x: np.ndarray, y: np.ndarray) -> float:
    """Of the logistic fit, over 5 stratified folds."""
    scores = cross_val_score(LogisticRegression(C=10.0), x, y, cv=5, scoring="neg_log_loss")
    return float(-scores.mean())


def pairs(data_root: Path) -> dict[str, dict[str, np.ndarray]]:
    copies = load_labelled_set(data_root / "copies")
    built = vecsearch.build(copies.paths, _fresh("agreement-copies"), quiet=True)
    group = dict(zip(copies.paths, copies.groups))
    out = {"copies": checked_hits(built, [copies.paths[q] for q in copies.queries], group)}
    others: dict[str, tuple] = {}
    for name in stability.SCENES:
        data = load_labelled_set(data_root / name)
        keep = set(stability.unused(data_root, name, whole_scenes=True))
        others |= {p: (name, g) for p, g in zip(data.paths, data.groups) if p in keep}
    paths = list(others)
    built = vecsearch.build(paths, _fresh("agreement-scenes"), quiet=True)
    shots = checked_hits(built, paths, others)
    shots["copy"] = np.zeros(len(shots["copy"]), bool)  # another shot of a scene is not a copy
    out["other shots"] = shots
    return out


def _fresh(name: str) -> Path:
    path = WORK / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    args = ap.parse_args()
    cache = WORK / "agreement-pairs.pkl"
    if cache.exists():
        found = pickle.loads(cache.read_bytes())
    else:
        found = pairs(args.data)
        cache.write_bytes(pickle.dumps(found))
    both = {k: np.concatenate([found[s][k] for s in found]) for k in found["copies"]}
    used = verified(both)
    pairs_used = {k: v[used] for k, v in both.items()}
    y = pairs_used["copy"]
    for clip in CLIPS:
        x = features(pairs_used, clip)
        print(
            f"agreement clipped to {clip}: held-out log loss {held_out_log_loss(x[:, :2], y):.4f} "
            f"({held_out_log_loss(x[:, :1], y):.4f} without the residual)"
        )
    x = features(pairs_used)
    model = LogisticRegression(C=10.0).fit(x[:, :2], y)
    beside = LogisticRegression(C=10.0).fit(x, y)
    print(f"pairs: {used.sum()} verified with an agreement ({y.sum()} copies, {(~y).sum()} other)")
    for name, f in found.items():
        ok = verified(f)
        for kind, m in (("copies", f["copy"][ok]), ("not copies", ~f["copy"][ok])):
            for what in ("agreement", "residual") if m.any() else ():
                q = " ".join(f"{v:.3f}" for v in np.percentile(f[what][ok][m], [10, 25, 50, 75, 90]))
                print(f"{name}, {kind}: {m.sum()} verified, {what} p10-p90 {q}")
    print(f"with AGREEMENT_CLIP = {verify.AGREEMENT_CLIP}:")
    print(f"AGREEMENT_WEIGHT = {model.coef_[0, 0]:.3f}")
    print(f"RESIDUAL_WEIGHT = {model.coef_[0, 1]:.3f}")
    print(f"BIAS = {model.intercept_[0]:.3f}")
    print(f"copies are {y.mean():.3f} of the pairs (the share the percentage assumes)")
    failed = both["inliers"] < verify.MIN_INLIERS
    x_failed, y_failed = features(both)[failed][:, 2:], both["copy"][failed]
    on_failed = LogisticRegression(C=10.0).fit(x_failed, y_failed)
    print(
        f"failed checks: {failed.sum()} ({y_failed.sum()} copies), held-out log loss "
        f"{held_out_log_loss(x_failed, y_failed):.4f}: FAILED_WEIGHT = {on_failed.coef_[0, 0]:.3f}, "
        f"FAILED_BIAS = {on_failed.intercept_[0]:.3f}"
    )
    w = beside.coef_[0]
    print(
        f"with the vector's log-odds beside them: {w[0]:.3f} * atanh(agreement) {w[1]:+.3f} * residual "
        f"{w[2]:+.3f} * vector {beside.intercept_[0]:+.3f}"
    )


if __name__ == "__main__":
    main()

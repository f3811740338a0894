"""Choose the colour weight, the mirror penalty and the colourless test on all four shared sets.

    python -m bench.tune_copies [--data /work/shared/data]

One real build per set (default encoder training; the colour weight does not change training:
both parts are unit vectors before they are weighted, so any weight is a re-weighting of the same
vectors). Every query is also encoded as its mirror image, and tested for colour. Then every
setting ranks every query of the set in numpy, as ``matching.py`` would: the straight distance,
the mirror's plus a penalty, the better of the two; a colourless query by the ORB-VLAD part alone.
Reported: UKBench N-S, Holidays mAP, Wang P@10, and on copies mAP, recall@1 and the worst edit.
The table it prints is in bench/TUNING.md.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from vecsearch import images, ivf, pathnames, pipeline
from vecsearch.evaluate import load_labelled_set, metrics_by_kind, retrieval_metrics
from vecsearch.features import colourless

SETS = ("ukbench", "holidays", "wang", "copies")
HEADLINE = {"ukbench": "N-S", "holidays": "mAP", "wang": "P@10", "copies": "mAP"}
WORK = Path(__file__).parent / "work"


def prepare(name: str, data_root: Path) -> dict:
    """The set's vectors (one build), its queries' mirror vectors and colourless flags."""
    data = load_labelled_set(data_root / name)
    if name == "wang":
        data.queries = np.arange(len(data.paths))
    root = WORK / f"tune-copies-{name}"
    shutil.rmtree(root, ignore_errors=True)
    index = pipeline.build(data.paths, root, quiet=True)
    meta = index.metadata()
    where = {p: i for i, p in enumerate(data.paths)}
    vectors = np.zeros((len(data.paths), index.dim), np.float32)
    vectors[[where[p] for p in pathnames.of(meta)]] = ivf.reconstruct(index.faiss, meta["id"].to_numpy())
    enc = index.encoder
    pixels = [images.load(data.paths[q], enc.config.max_side)[0] for q in data.queries]
    mirrored = enc.encode([np.ascontiguousarray(p[:, ::-1]) for p in pixels])
    grey = np.array([colourless(p) for p in pixels])
    return dict(data=data, X=vectors, M=mirrored, grey=grey, cdim=enc.colour_dim, w=enc.config.colour_weight)


def reweighted(v: np.ndarray, cdim: int, w0: float, w: float) -> np.ndarray:
    c, rest = v[:, :cdim] / np.sqrt(w0), v[:, cdim:] / np.sqrt(1 - w0)
    return np.hstack([np.sqrt(w) * c, np.sqrt(1 - w) * rest]).astype(np.float32)


def squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T


def rank(r: dict, w: float, penalty: float | None, colourless_test: bool) -> dict:
    """The metrics of one setting; penalty None = no mirror search."""
    data, cdim = r["data"], r["cdim"]
    X, M = reweighted(r["X"], cdim, r["w"], w), reweighted(r["M"], cdim, r["w"], w)
    Q = X[data.queries]
    D, Dm = squared(Q, X), squared(M, X)
    if colourless_test and r["grey"].any():  # the VLAD part alone, on the full distance's scale
        g = r["grey"]
        D[g] = squared(Q[g][:, cdim:], X[:, cdim:]) / (1 - w)
        Dm[g] = squared(M[g][:, cdim:], X[:, cdim:]) / (1 - w)
    if penalty is not None:
        D = np.minimum(D, Dm + penalty)
    order = np.argsort(D, axis=1, kind="stable")
    if data.kinds:
        return metrics_by_kind(order, data.groups, data.queries, data.kinds)
    return {"all": retrieval_metrics(order, data.groups, data.queries)}


def line(results: dict) -> str:
    cells = []
    for name, m in results.items():
        cells.append(f"{m['all'][HEADLINE[name]]:.3f}")
        if name == "copies":
            worst = min((v["mAP"], k) for k, v in m.items() if k != "all")
            cells += [f"{m['all']['recall@1']:.3f}", f"{worst[1]} {worst[0]:.3f}"]
    return " | ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    args = ap.parse_args()
    prepared = {name: prepare(name, args.data) for name in SETS}
    print("colourless queries:", {n: int(r["grey"].sum()) for n, r in prepared.items()})
    columns = ["colour weight", "mirror penalty", "colourless test", "UKB N-S", "Hol mAP", "Wang P@10"]
    columns += ["copies mAP", "copies r@1", "worst edit"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    settings = [(0.5, None, False), (0.5, None, True), (0.5, 0.0, True), (0.4, None, False), (0.4, 0.0, True)]
    weights, penalties = (0.35, 0.38, 0.4, 0.42, 0.45), (0.05, 0.1, 0.125, 0.15, 0.2, 0.3)
    settings += [(w, p, True) for w in weights for p in penalties]
    for w, penalty, grey in settings:
        results = {name: rank(r, w, penalty, grey) for name, r in prepared.items()}
        shown = "none" if penalty is None else f"{penalty:g}"
        print(f"| {w:g} | {shown} | {'yes' if grey else 'no'} | {line(results)} |", flush=True)


if __name__ == "__main__":
    main()

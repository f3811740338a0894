"""Choose geometric verification's threshold, depth and order on all four shared sets.

    python -m bench.tune_verify [--data /work/shared/data]

One real build per set (default settings). For every query, its vector ranking and, for each of
its top 30 candidates, the homography inliers of the query's keypoints and of its mirror image's are
computed once (``vecsearch.verify``; cached in bench/work). Then each setting reorders the rankings
as ``verify.rerank`` would: verified = at least THRESHOLD inliers among the top DEPTH, moved ahead
in vector order or most inliers first. The table it prints is in bench/TUNING.md.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vecsearch import pipeline, verify
from vecsearch.evaluate import load_labelled_set, metrics_by_kind, retrieval_metrics
from vecsearch.images import to_pixels

SETS = ("ukbench", "holidays", "wang", "copies")
WORK = Path(__file__).parent / "work"
TOP = 30


def candidates(name: str, data_root: Path) -> dict:
    cache = WORK / f"tune-verify-{name}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    data = load_labelled_set(data_root / name)
    if name == "wang":
        data.queries = np.arange(len(data.paths))
    root = WORK / f"tune-verify-{name}"
    shutil.rmtree(root, ignore_errors=True)
    index = pipeline.build(data.paths, root, quiet=True)
    side = index.encoder.config.max_side
    rows = []
    with ThreadPoolExecutor(2) as pool:
        for q, hits in zip(
            data.queries, index.search_many([data.paths[q] for q in data.queries], k=len(data.paths))
        ):
            query = verify.QueryKeypoints(to_pixels(data.paths[q], side))
            found = list(pool.map(lambda p, qk=query: _both(qk, p, side), [h.path for h in hits[:TOP]]))
            rows.append(([h.path for h in hits], found))
    out = {"data": data, "rows": rows}
    cache.write_bytes(pickle.dumps(out))
    return out


def _both(query: verify.QueryKeypoints, path: str, side: int) -> tuple[int, int]:
    k = verify.keypoints(to_pixels(path, side))
    return verify.match(query.straight, k).inliers, verify.match(query.mirrored, k).inliers


def rank(c: dict, threshold: int, depth: int, by_inliers: bool) -> dict:
    data = c["data"]
    where = {os.path.abspath(p): i for i, p in enumerate(data.paths)}
    orders = []
    for paths, found in c["rows"]:
        ids = [where[p] for p in paths]
        best = [max(a, b) for a, b in found][:depth]
        verified = [i for i, n in enumerate(best) if n >= threshold]
        if by_inliers:
            verified.sort(key=lambda i: -best[i])
        chosen = set(verified)
        orders.append([ids[i] for i in verified + [i for i in range(len(ids)) if i not in chosen]])
    order = np.array(orders)
    if data.kinds:
        return metrics_by_kind(order, data.groups, data.queries, data.kinds)["all"]
    return retrieval_metrics(order, data.groups, data.queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    args = ap.parse_args()
    cached = {name: candidates(name, args.data) for name in SETS}
    print("| threshold | depth | verified ordered by | UKB N-S | Hol mAP | Wang P@10 | copies mAP |")
    print("|---|---|---|---|---|---|---|")
    no = {name: rank(c, 10**9, TOP, False) for name, c in cached.items()}
    print(
        f"| no verification | | | {no['ukbench']['N-S']:.3f} | {no['holidays']['mAP']:.3f} | "
        f"{no['wang']['P@10']:.3f} | {no['copies']['mAP']:.3f} |"
    )
    # Below 20 the candidates' inliers are exact; verify.match stops counting under MIN_INLIERS.
    for threshold in (20, 25, 30):
        for depth in (20, 30):
            for by_inliers in (False, True):
                m = {name: rank(c, threshold, depth, by_inliers) for name, c in cached.items()}
                print(
                    f"| {threshold} | {depth} | {'inliers' if by_inliers else 'vector rank'} | "
                    f"{m['ukbench']['N-S']:.3f} | {m['holidays']['mAP']:.3f} | {m['wang']['P@10']:.3f} | "
                    f"{m['copies']['mAP']:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Retrieval quality and calibration of vecsearch against the baselines a user would otherwise pick.

    python -m bench.quality [--sets ukbench holidays wang copies] [--data /work/shared/data] [--no-verify]
    python -m bench.quality --config colour_side=256   # a non-default encoder: printed, not recorded

For each labelled set: a real index is built (encoder trained and calibration fitted as for users,
``vecsearch.evaluate.evaluate_index``), every query is ranked through ``Index.search_many`` as it
is by default and with ``verify=True``, and the same queries are ranked by imagehash pHash and a
plain global HSV histogram (``baseline_metrics``). Protocols follow each SOURCE.md; Wang uses the
classic one (all 1000 images query the other 999), not the 100-image split of its queries.csv;
copies (copy detection) queries with its 796 edited copies and breaks the figures down by edit.
Nothing is tuned here. Prints the figures and replaces the ``quality`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench import stability
from bench.results import header, md_table, write_section
from vecsearch.encoder import EncoderConfig
from vecsearch.evaluate import (
    baseline_metrics,
    calibration_spread,
    evaluate_index,
    evaluate_search,
    load_labelled_set,
)

METRICS = ("mAP", "recall@1", "P@10", "P@20", "N-S")
#: The headline metric of each set and the floor vecsearch must reach on it (by default).
TARGETS = {
    "ukbench": ("N-S", 3.85),
    "holidays": ("mAP", 0.78),
    "wang": ("P@10", 0.78),
    "copies": ("mAP", 0.97),
}
COPIES = {"recall@1": 0.99, "every edit's mAP": 0.92}  # the copy-detection set's other floors
ALL_QUERIES = {"wang"}  # sets evaluated with every image as a query (classic protocol)
METHODS = ("vecsearch", "vecsearch --verify", "pHash", "colour-hist")
PR = ("P@70", "R@70", "P@90", "R@90")  # precision and recall of "every hit at or above 70% / 90%"


def run_set(name: str, data_root: Path, work: Path, workers: int | None, verify: bool, config=None) -> dict:
    data = load_labelled_set(data_root / name)
    if name in ALL_QUERIES:
        data.queries = np.arange(len(data.paths))
    index_dir = work / f"quality-{name}"
    shutil.rmtree(index_dir, ignore_errors=True)  # always a fresh build, never a resumed one
    t0 = time.time()
    ours = evaluate_index(data, index_dir, workers=workers, config=config)
    out = {"images": len(data.paths), "queries": len(data.queries), "vecsearch": ours}
    if config is not None:
        return out
    ours["ECE_other_seeds"] = calibration_spread(index_dir, ours["top10"], workers=workers)
    t1 = time.time()
    if verify:
        import vecsearch

        out["vecsearch --verify"] = evaluate_search(data, vecsearch.open(index_dir), verify=True)
    t2 = time.time()
    out |= baseline_metrics(data)
    print(
        f"{name}: vecsearch {t1 - t0:.0f}s (build {ours['build_seconds']:.0f}s), verify {t2 - t1:.0f}s, "
        f"baselines {time.time() - t2:.0f}s",
        file=sys.stderr,
    )
    return out


def _retrieval(name: str, r: dict) -> list[str]:
    methods = [m for m in METHODS if m in r]
    rows = [[m] + [f"{r[m][k]:.3f}" for k in METRICS] for m in methods]
    out = [
        f"\n### {name} ({r['images']} images, {r['queries']} queries)\n\n",
        md_table(["method", *METRICS], rows),
    ]
    if r["vecsearch"]["skipped"]:
        out.append(f"\n{r['vecsearch']['skipped']} files were skipped by the build (ranked last).\n")
    kinds = r["vecsearch"].get("by_kind")
    if kinds:
        out.append("\nBy edit (the copy's main edit, `transforms.csv`): mAP / recall@1\n\n")
        rows = [
            [
                kind,
                kinds[kind]["n"],
                *(
                    f"{r[m]['by_kind'][kind]['mAP']:.3f} / {r[m]['by_kind'][kind]['recall@1']:.3f}"
                    for m in methods
                ),
            ]
            for kind in sorted(kinds, key=lambda k: (k != "all", k))
        ]
        out.append(md_table(["edit", "queries", *methods], rows))
    if "vecsearch --verify" in r:
        a, b = r["vecsearch"]["seconds_per_query"], r["vecsearch --verify"]["seconds_per_query"]
        out.append(
            f"\nSeconds per query of this ranking (every query ranks the whole set, k = {r['images']}): "
            f"{1000 * a:.1f} ms by default, {1000 * b:.0f} ms with verification.\n"
        )
    return out


def _targets(results: dict) -> list[str]:
    rows = []
    for name, r in results.items():
        key, goal = TARGETS[name]
        floors = [(key, r["vecsearch"][key], goal)]
        if name == "copies":
            kinds = {k: v for k, v in r["vecsearch"]["by_kind"].items() if k != "all"}
            worst = min(kinds, key=lambda k: kinds[k]["mAP"])
            floors += [
                ("recall@1", r["vecsearch"]["recall@1"], COPIES["recall@1"]),
                (f"worst edit's mAP ({worst})", kinds[worst]["mAP"], COPIES["every edit's mAP"]),
            ]
        for metric, value, floor in floors:
            best = max(r["pHash"].get(metric, float("nan")), r["colour-hist"].get(metric, float("nan")))
            rows.append(
                [
                    name,
                    metric,
                    f"{value:.3f}",
                    f"≥ {floor}",
                    "met" if value >= floor else "**not met**",
                    "" if np.isnan(best) else f"{best:.3f}",
                ]
            )
    return [
        "\n### Targets (default settings)\n\n",
        md_table(["set", "metric", "vecsearch", "floor", "", "best baseline"], rows),
    ]


def _calibration(name: str, r: dict) -> list[str]:
    v = r["vecsearch"]
    out = [
        f"\n### Calibration on {name}: top-10 hits of every query (query excluded), relevant = same "
        f"group; ECE = {v['ECE']:.3f}\n\n"
    ]
    rows = [
        [b["bin"], b["n"], f"{100 * b['stated']:.1f}%", f"{100 * b['observed']:.1f}%"]
        for b in v["reliability"]
    ]
    out.append(md_table(["stated %", "hits", "mean stated", "observed same-group"], rows))
    every = [v["ECE"], *v["ECE_other_seeds"]]
    out.append(
        "\nThe same hits under calibrations refitted on other random draws of sources and edits (seeds "
        f"1–{len(every) - 1}; the build's is seed 0): "
        f"ECE {', '.join(f'{e:.3f}' for e in v['ECE_other_seeds'])}; over all {len(every)}: mean "
        f"{np.mean(every):.3f}, sd {np.std(every):.3f}, range {max(every) - min(every):.3f} "
        "(target ≤ 0.010).\n\n"
    )
    rows = []
    for method in ("vecsearch", "vecsearch --verify"):
        if method in r:
            _, relevant, similarity = r[method]["top10"]
            pr = stability.precision_recall(similarity, relevant)
            rows.append([method, f"{r[method]['ECE']:.3f}", *(f"{pr[k]:.3f}" for k in PR)])
    out.append(md_table(["ranking", "ECE", *PR], rows))
    return out


def section(results: dict[str, dict], started: str, stable: dict | None = None) -> str:
    out = [
        started,
        "\nvecsearch = a real `vecsearch.build` of the set with default settings, ranked through "
        "`Index.search_many` (with `verify=True` for the --verify row); pHash = imagehash.phash, Hamming "
        "distance (ties broken at random, seed 0); colour-hist = global HSV histogram 8x12x3, "
        "`cv2.compareHist` symmetric chi-square (HISTCMP_CHISQR_ALT). mAP, recall@1, P@10, P@20 exclude "
        "the query; N-S counts it (top 4).\n",
    ]
    for name, r in results.items():
        out += _retrieval(name, r)
    out += _targets(results)
    for name, r in results.items():
        out += _calibration(name, r)
    if stable:
        out += _stability(stable)
    return "".join(out)


def _at_70_and_90(m: dict) -> str:
    return (
        f"at ≥ 70%: precision {m['P@70']:.3f}, recall {m['R@70']:.3f}; "
        f"at ≥ 90%: {m['P@90']:.3f}, {m['R@90']:.3f}"
    )


def _stability(s: dict) -> list[str]:
    out = ["\n### How steady the percentage is (copies set unless named)\n\n"]
    rows = []
    if "renamed" in s:
        r = s["renamed"]
        rows.append(
            [
                "the same files under other names (a fresh build)",
                f"ECE {r['ECE']:.3f} → {r['ECE renamed']:.3f}",
                f"{r['pairs']} same pairs moved {r['moved mean']:.1f} points on average (p90 "
                f"{r['moved p90']:.1f})",
            ]
        )
    if "sizes" in s:
        r = s["sizes"]
        rows.append(
            [
                f"{r['parts']} random 50-image parts, same make-up, the whole set's encoder, "
                "the query not its own hit",
                "",
                _moved(r),
            ]
        )
        if "verify" in r:
            rows.append(["the same parts and pairs with `--verify`", "", _moved(r["verify"])])
    if "small" in s:
        r = s["small"]
        for size, kinds in r["sizes"].items():
            for kind, m in kinds.items():
                encoder = "its own encoder" if kind == "own" else "the whole set's encoder"
                rows.append(
                    [
                        f"{r['parts']} random {size}-image parts, same make-up, {encoder}",
                        f"ECE {m['ECE']:.3f}",
                        _at_70_and_90(m),
                    ]
                )
    if "tiny" in s:
        r = s["tiny"]
        rows.append(
            [
                f"{r['indexes']} random 20-image indexes, {r['queries'] // r['indexes']} unrelated Holidays "
                "photos (of scenes the set did not take) queried in each",
                "",
                f"best hit {r['max']:.1f}% at most ({r['mean']:.1f}% on average)",
            ]
        )
        rows.append(
            [
                f"the same {r['queries'] // r['indexes']} photos queried in the whole set's index",
                "",
                f"best hit {r['whole max']:.1f}% at most ({r['whole mean']:.1f}% on average)",
            ]
        )
    if "outside" in s:
        r = s["outside"]
        rows.append(
            [
                f"queries from outside: the {r['queries']} edited copies against an index of the "
                f"{r['images']} originals and distractors (one true match each)",
                f"ECE {r['ECE']:.3f}",
                _at_70_and_90(r),
            ]
        )
        rows.append(
            [
                "the unrelated photos in that index",
                "",
                f"best hit {r['strangers max']:.1f}% at most ({r['strangers mean']:.1f}% on average)",
            ]
        )
        eces, means = (
            [r["ECE"], *r["ECE other seeds"]],
            [r["strangers mean"], *r["strangers mean other seeds"]],
        )
        rows.append(
            [
                f"the same under {len(eces)} calibration draws (seeds 0–{len(eces) - 1})",
                f"ECE {np.mean(eces):.3f} ± {np.std(eces):.3f} ({min(eces):.3f}–{max(eces):.3f})",
                f"unrelated photos' best hit {min(means):.1f}–{max(means):.1f}% on average",
            ]
        )
    if "makeup" in s:
        r = s["makeup"]
        rows.append(
            [
                f"the other {r['added']} shared photos added ({r['images']} images)",
                f"ECE {r['ECE']:.3f}",
                _at_70_and_90(r),
            ]
        )
        w = r["without other shots"]
        rows.append(
            [
                f"the same, leaving out the {r['other shots']} hits that are other shots of the "
                f"query's scene or object ({r['other shots ≥ 70']} of them stated ≥ 70%)",
                f"ECE {w['ECE']:.3f}",
                _at_70_and_90(w),
            ]
        )
        if "verify" in r:
            v = r["verify"]
            rows.append(
                [
                    f"the same {r['images']} images with `--verify` ({v['other shots']} hits are "
                    f"other shots, {v['other shots ≥ 70']} of them stated ≥ 70%)",
                    f"ECE {v['ECE']:.3f}",
                    _at_70_and_90(v),
                ]
            )
    for name, r in s.get("labels", {}).items():
        rows.append(
            [
                f"{name}: `calibrate --labels` on half of the groups ({r['labelled images']} images), "
                f"the other half's {r['queries']} queries",
                f"ECE {r['ECE before']:.3f} → {r['ECE after']:.3f}",
                f"at ≥ 70%: precision {r['P@70']:.3f}, recall {r['R@70']:.3f}",
            ]
        )
    out.append(md_table(["what", "ECE", "percentages"], rows))
    return out


def _moved(r: dict) -> str:
    return (
        f"{r['pairs']} same pairs moved {r['moved mean']:.1f} points on average (p90 {r['moved p90']:.1f}, "
        f"max {r['moved max']:.1f}; {r['moved over 5']} over 5)"
    )


def steadiness(data_root: Path, work: Path, results: dict, verify: bool = True) -> dict:
    """The stability figures (bench/stability.py) of the sets that were built."""
    t0 = time.time()
    out: dict = {}
    if "copies" in results:
        copies = load_labelled_set(data_root / "copies")
        built = work / "quality-copies"
        out["renamed"] = stability.renamed(copies, work / "stability", built)
        out["sizes"] = stability.sizes(copies, work / "stability", built, verify=verify)
        out["small"] = stability.small_collections(copies, work / "stability", built)
        out["tiny"] = stability.tiny(copies, work / "stability", stability.strangers(data_root), built)
        out["outside"] = stability.outside(data_root, work / "stability", stability.strangers(data_root))
        out["makeup"] = stability.makeup(data_root, work / "stability", verify=verify)
    out["labels"] = {
        name: stability.labels(name, data_root, work / "stability", work / f"quality-{name}")
        for name in ("ukbench", "holidays")
        if name in results
    }
    print(f"stability: {time.time() - t0:.0f}s", file=sys.stderr)
    return out


def variant(settings: list[str]) -> EncoderConfig:
    """EncoderConfig with FIELD=VALUE overrides (values as JSON: 256, 0.5, [8,3,3])."""
    raw = json.loads(EncoderConfig().to_json())
    try:
        for s in settings:
            name, _, value = s.partition("=")
            raw[name] = json.loads(value)
        return EncoderConfig.from_json(json.dumps(raw))
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--config {' '.join(settings)}: {e}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument(
        "--work", type=Path, default=Path(__file__).parent / "work", help="where the indexes are built"
    )
    ap.add_argument("--workers", type=int, default=None, help="build workers (default: every core)")
    ap.add_argument("--no-verify", action="store_true", help="leave out the (slow) --verify rankings")
    ap.add_argument("--no-stability", action="store_true", help="leave out the stability figures")
    ap.add_argument(
        "--config",
        nargs="+",
        metavar="FIELD=VALUE",
        help="evaluate a non-default encoder (e.g. colour_side=256): "
        "vecsearch's figures only, printed; bench/RESULTS.md is left alone",
    )
    args = ap.parse_args()
    if args.config:
        config = variant(args.config)
        for name in args.sets:
            r = run_set(name, args.data, args.work, args.workers, False, config)["vecsearch"]
            print(f"{name}: " + ", ".join(f"{k} {r[k]:.3f}" for k in (*METRICS, "ECE")), flush=True)
        return
    t0, started = time.time(), header("Retrieval quality (bench/quality.py)")  # machine state at the start
    results = {
        name: run_set(name, args.data, args.work, args.workers, not args.no_verify) for name in args.sets
    }
    stable = None if args.no_stability else steadiness(args.data, args.work, results, not args.no_verify)
    text = section(results, started, stable) + f"\nWhole run: {time.time() - t0:.0f} s.\n"
    print(text)
    write_section("quality", text)


if __name__ == "__main__":
    main()

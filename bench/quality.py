"""Retrieval quality and calibration of vecsearch against the baselines a user would otherwise pick.

    python -m bench.quality [--sets ukbench holidays wang] [--data /work/shared/data]
    python -m bench.quality --config colour_side=256   # a non-default encoder: printed, not recorded

For each labelled set: a real index is built (encoder trained and calibration fitted as for users,
``vecsearch.evaluate.evaluate_index``) and compared with imagehash pHash and a plain global HSV
histogram (``baseline_metrics``). Protocols follow each SOURCE.md; Wang uses the classic one (all
1000 images query the other 999), not the 100-image split of its queries.csv. Nothing is tuned here.
Prints the figures and replaces the ``quality`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench.results import header, md_table, write_section
from vecsearch.encoder import EncoderConfig
from vecsearch.evaluate import baseline_metrics, calibration_spread, evaluate_index, load_labelled_set

METRICS = ("mAP", "recall@1", "P@10", "P@20", "N-S")
#: The headline metric of each set and the target vecsearch must reach on it.
TARGETS = {"ukbench": ("N-S", 3.7), "holidays": ("mAP", 0.75), "wang": ("P@10", 0.78)}
ALL_QUERIES = {"wang"}  # sets evaluated with every image as a query (classic protocol)
CALIBRATED = ("ukbench", "holidays")  # instance-level sets: "same group" = "same picture/object"


def run_set(
    name: str, data_root: Path, work: Path, workers: int | None, config: EncoderConfig | None = None
) -> dict:
    data = load_labelled_set(data_root / name)
    if name in ALL_QUERIES:
        data.queries = np.arange(len(data.paths))
    index_dir = work / f"quality-{name}"
    shutil.rmtree(index_dir, ignore_errors=True)  # always a fresh build, never a resumed one
    t0 = time.time()
    ours = evaluate_index(data, index_dir, workers=workers, config=config)
    if config is not None:
        return {"images": len(data.paths), "queries": len(data.queries), "vecsearch": ours}
    if name in CALIBRATED:
        ours["ECE_other_seeds"] = calibration_spread(index_dir, ours["top10"], workers=workers)
    t1 = time.time()
    base = baseline_metrics(data)
    t2 = time.time()
    print(
        f"{name}: vecsearch {t1 - t0:.0f}s (build {ours['build_seconds']:.0f}s), baselines {t2 - t1:.0f}s",
        file=sys.stderr,
    )
    return {"images": len(data.paths), "queries": len(data.queries), "vecsearch": ours, **base}


def section(results: dict[str, dict], started: str) -> str:
    out = [started]
    out.append(
        "\nvecsearch = a real `vecsearch.build` of the set with default settings, ranked through "
        "`Index.search_many`; pHash = imagehash.phash, Hamming distance (ties broken at random, seed 0); "
        "colour-hist = global HSV histogram 8x12x3, `cv2.compareHist` symmetric chi-square "
        "(HISTCMP_CHISQR_ALT). "
        "mAP, recall@1, P@10, P@20 exclude the query; N-S counts it (top 4).\n"
    )
    target_rows = []
    for name, r in results.items():
        rows = [[m] + [f"{r[m][k]:.3f}" for k in METRICS] for m in ("vecsearch", "pHash", "colour-hist")]
        out.append(f"\n### {name} ({r['images']} images, {r['queries']} queries)\n\n")
        out.append(md_table(["method", *METRICS], rows))
        if r["vecsearch"]["skipped"]:
            out.append(f"\n{r['vecsearch']['skipped']} files were skipped by the build (ranked last).\n")
        key, goal = TARGETS.get(name, (None, None))
        if key:
            v = r["vecsearch"][key]
            best = max(r["pHash"][key], r["colour-hist"][key])
            behind = [
                f"{k} ({b})"
                for k in METRICS
                for b in ("pHash", "colour-hist")
                if r[b][k] >= r["vecsearch"][k]
            ]
            target_rows.append(
                [
                    name,
                    key,
                    f"{v:.3f}",
                    f"≥ {goal}",
                    "met" if v >= goal else "**not met**",
                    f"{best:.3f}",
                    "yes" if v > best else "**no**",
                    ", ".join(behind) or "none",
                ]
            )
    out.append("\n### Targets\n\n")
    out.append(
        md_table(
            [
                "set",
                "metric",
                "vecsearch",
                "target",
                "",
                "best baseline",
                "beats both",
                "metrics where a baseline is ≥ vecsearch",
            ],
            target_rows,
        )
    )
    for name in CALIBRATED:
        if name not in results:
            continue
        v = results[name]["vecsearch"]
        out.append(
            f"\n### Calibration on {name}: top-10 hits of every query (query excluded), relevant = same "
            f"group; ECE = {v['ECE']:.3f}\n\n"
        )
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
            f"{np.mean(every):.3f}, sd {np.std(every):.3f}.\n"
        )
    return "".join(out)


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
            r = run_set(name, args.data, args.work, args.workers, config)["vecsearch"]
            print(f"{name}: " + ", ".join(f"{k} {r[k]:.3f}" for k in (*METRICS, "ECE")), flush=True)
        return
    t0, started = time.time(), header("Retrieval quality (bench/quality.py)")  # machine state at the start
    results = {name: run_set(name, args.data, args.work, args.workers) for name in args.sets}
    text = section(results, started) + f"\nWhole run: {time.time() - t0:.0f} s.\n"
    print(text)
    write_section("quality", text)


if __name__ == "__main__":
    main()

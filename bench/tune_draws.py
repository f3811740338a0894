"""How much the percentage depends on which sources and edits the calibration happened to draw.

    python -m bench.tune_draws [--data /work/shared/data] [--sets copies ukbench holidays]

One real build per set (default settings), the top-10 hits of its queries (query excluded) ranked
once; then the calibration is refitted six times (seeds 0–5, ``vecsearch.evaluate.refit``) under
each setting of how many sources it draws and how many edited copies each gets
(``calibrate.SAMPLE``, ``COPIES``, ``MIN_COPIES``), and the same hits are stated by each refit.
Printed per set and setting: the six ECEs (their mean, standard deviation and range) and recall at
≥ 70% and ≥ 90% (mean ± sd), and the seconds per refit (which read the sources again; a build makes
its copies from pixels it has decoded anyway). The table is in bench/TUNING.md.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

import vecsearch
from bench.stability import precision_recall
from vecsearch import calibrate
from vecsearch.calibration import reliability
from vecsearch.evaluate import evaluate_search, load_labelled_set, refit

#: (sources, copies in all, copies of each source at least)
SETTINGS = ((200, 400, 2), (400, 800, 2), (200, 600, 3), (200, 800, 4))
SEEDS = range(6)


def draws(index, distance: np.ndarray, relevant: np.ndarray, setting: tuple[int, int, int]) -> dict:
    calibrate.SAMPLE, calibrate.COPIES, calibrate.MIN_COPIES = setting
    eces, r70, r90 = [], [], []
    t0 = time.perf_counter()
    for seed in SEEDS:
        stated = refit(index, seed).percent_at(distance)
        eces.append(reliability(stated, relevant)[1])
        found = precision_recall(stated, relevant)
        r70.append(found["R@70"])
        r90.append(found["R@90"])
    return {
        "ECE": eces,
        "R@70": (np.mean(r70), np.std(r70)),
        "R@90": (np.mean(r90), np.std(r90)),
        "seconds": (time.perf_counter() - t0) / len(SEEDS),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--sets", nargs="+", default=["copies", "ukbench", "holidays"])
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "draws")
    args = ap.parse_args()
    built = (calibrate.SAMPLE, calibrate.COPIES, calibrate.MIN_COPIES)
    print(
        "| set | sources, copies in all, each at least | ECE of seeds 0–5 | mean, sd, range "
        "| R@70 | R@90 | s/refit |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.sets:
        data = load_labelled_set(args.data / name)
        folder = args.work / name
        shutil.rmtree(folder, ignore_errors=True)
        calibrate.SAMPLE, calibrate.COPIES, calibrate.MIN_COPIES = built
        index = vecsearch.build(data.paths, folder, quiet=True)
        distance, relevant, _ = evaluate_search(data, index)["top10"]
        for setting in SETTINGS:
            r = draws(index, distance, relevant, setting)
            e = r["ECE"]
            print(
                f"| {name} | {', '.join(map(str, setting))} | {' '.join(f'{x:.3f}' for x in e)} | "
                f"{np.mean(e):.3f}, {np.std(e):.4f}, {max(e) - min(e):.3f} | "
                f"{r['R@70'][0]:.3f} ± {r['R@70'][1]:.3f} | {r['R@90'][0]:.3f} ± {r['R@90'][1]:.3f} | "
                f"{r['seconds']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

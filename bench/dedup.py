"""Near-duplicate detection quality (pairwise precision/recall of `vecsearch dedup` groups) and speed.

    python -m bench.dedup [--data /work/shared/data] [--large bench/work/scale/index-1000000] [--budget-s 300]

Collection: 300 sources (one per UKBench group, plus one per group of 50 Holidays groups), each
with 2 edited copies (`random_edit`, strength 0.5) and, for every third source, a plain copy
(rescaled to 60% and re-compressed at JPEG 75); the other shots of each source's scene or object
(the rest of its group: what a burst or a second take leaves in a real collection); plus 700
unrelated images (one per remaining Holidays group and Wang photos). True groups = a source with its
copies. A found pair is right if both images belong to the same true group; a pair of two shots of
one scene is wrong, and counted apart. Each threshold runs without and with ``--verify``. Then the
wall time of `find_groups` on the largest index built by bench/scale.py (stopped after --budget-s
and extrapolated). Replaces the ``dedup`` section.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

import vecsearch
from bench.results import header, md_table, write_section
from bench.speed import vecsearch_command
from vecsearch.edits import jpeg, random_edit, rescale
from vecsearch.evaluate import load_labelled_set

THRESHOLDS = (70, 80, 90)


def one_per_group(paths: list[str], groups: np.ndarray, rng: np.random.Generator) -> list[str]:
    """One random image of each group, in group order."""
    return [paths[rng.choice(np.flatnonzero(groups == g))] for g in np.unique(groups)]


def make_collection(data: Path, out: Path, seed: int = 0) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Write the edited copies under ``out``; return every path of the collection, its true group
    (singletons get their own) and, for sources, their copies and the other shots of their scenes,
    the scene."""
    rng = np.random.default_rng(seed)
    uk, hol, wang = (load_labelled_set(data / s) for s in ("ukbench", "holidays", "wang"))
    hol_one = one_per_group(hol.paths, hol.groups, rng)
    rng.shuffle(hol_one)
    sources = one_per_group(uk.paths, uk.groups, rng) + hol_one[:50]
    unrelated = hol_one[50:] + list(rng.choice(wang.paths, 700 - len(hol_one[50:]), replace=False))
    shots_of: dict[tuple[str, int], list[str]] = {}
    for name, labelled in (("ukbench", uk), ("holidays", hol)):
        for p, g in zip(labelled.paths, labelled.groups):
            shots_of.setdefault((name, int(g)), []).append(p)
    scene_key = {p: k for k, shots in shots_of.items() for p in shots}
    out.mkdir(parents=True, exist_ok=True)
    group: dict[str, int] = {}
    scene: dict[str, int] = {}
    for g, src in enumerate(sources):
        group[src] = scene[src] = g
        img = cv2.imread(src)
        copies = [random_edit(img, rng, strength=0.5) for _ in range(2)]
        if g % 3 == 0:
            copies.append(jpeg(rescale(img, 0.6), 75))
        for c, px in enumerate(copies):
            p = str(out / f"{g:03d}-{c}.jpg")
            cv2.imwrite(p, px)
            group[p] = scene[p] = g
    for g, src in enumerate(sources):
        for p in shots_of[scene_key[src]]:
            if p != src:
                scene[p] = g
                group[p] = -len(group)  # a group of its own
    for n, p in enumerate(unrelated):
        group[p] = len(sources) + n
    return list(group), group, scene


def pairs(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(set(g)), 2)}


def run_dedup(index: Path, threshold: int, verify: bool) -> tuple[float, list[list[str]]]:
    t = time.perf_counter()
    p = subprocess.run(
        [
            *vecsearch_command(),
            *("dedup", "--index", str(index), "--min-similarity", str(threshold), "--quiet"),
            *(["--verify"] if verify else []),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t
    found: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(p.stdout)):
        found.setdefault(row["group"], []).append(row["path"])
    return wall, list(found.values())


class OutOfTime(Exception):
    pass


def time_large(index_dir: Path, budget_s: float) -> str:
    """find_groups on a big index, stopped after ``budget_s`` seconds; rate, extrapolation and memory."""
    from vecsearch.dedup import find_groups

    idx = vecsearch.open(index_dir)
    n = len(idx)
    done, t0 = [0], time.perf_counter()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def progress(k: int) -> None:
        done[0] += k
        if time.perf_counter() - t0 > budget_s:
            raise OutOfTime

    try:
        groups = find_groups(idx, 90.0, progress)
        wall = time.perf_counter() - t0
        verdict = f"finished in {wall:.0f} s: {len(groups)} groups, {sum(map(len, groups))} images"
    except OutOfTime:
        wall = time.perf_counter() - t0
        verdict = (
            f"stopped after {wall:.0f} s at {done[0]:,} of {n:,} vectors ({done[0] / wall:.0f} vectors/s): "
            f"the whole index would take about {n / max(done[0], 1) * wall / 60:.0f} min"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    ix = idx.manifest.index
    return (
        f"`find_groups(min_similarity=90)` on {index_dir} ({n:,} vectors, {ix.factory}, nprobe {ix.nprobe}, "
        f"index file {idx.version.file('index').stat().st_size / 2**30:.2f} GiB): {verdict}; peak RSS of "
        "this process "
        f"{rss:.1f} GiB (was {rss0:.1f} GiB before).\n"
    )


def code_note() -> str:
    """Which vecsearch code ran (a snapshot outside the repo when the working tree was being edited)."""
    return f"- vecsearch code: `{Path(vecsearch.__file__).parent}`\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "dedup")
    ap.add_argument("--large", type=Path, default=Path(__file__).parent / "work" / "scale" / "index-1000000")
    ap.add_argument(
        "--budget-s", type=float, default=300.0, help="stop the large-index dedup after this long"
    )
    args = ap.parse_args()
    started, t_all = header("Near-duplicate detection (bench/dedup.py)") + code_note(), time.perf_counter()
    shutil.rmtree(args.work, ignore_errors=True)
    paths, truth_of, scene_of = make_collection(args.data, args.work / "copies")
    listing = args.work / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    index = args.work / "index"
    t = time.perf_counter()
    subprocess.run(
        [*vecsearch_command(), "build", str(listing), "--index", str(index), "--quiet"], check=True
    )
    t_build = time.perf_counter() - t
    by_group: dict[int, list[str]] = {}
    for p, g in truth_of.items():
        by_group.setdefault(g, []).append(p)
    true_pairs = pairs(list(by_group.values()))
    n_sources = sum(1 for g in by_group.values() if len(g) > 1)
    cal = vecsearch.open(index).calibration
    in_scenes = set(scene_of)
    n_copies = sum(len(g) - 1 for g in by_group.values() if len(g) > 1)
    n_other = len(in_scenes) - n_sources - n_copies
    rows = []
    for th, verify in itertools.product(THRESHOLDS, (False, True)):
        wall, found = run_dedup(index, th, verify)
        found_pairs = pairs(found)
        tp = len(found_pairs & true_pairs)
        prec, rec = tp / max(1, len(found_pairs)), tp / len(true_pairs)
        exact = sum(1 for g in found if set(g) in [set(x) for x in by_group.values() if len(x) > 1])
        wrong = found_pairs - true_pairs
        other_shots = sum(1 for a, b in map(tuple, wrong) if scene_of.get(a, -1) == scene_of.get(b, -2))
        false_unrelated = sum(1 for pr in wrong if not pr & in_scenes)
        rows.append(
            [
                f"{th}%" + (" `--verify`" if verify else ""),
                f"{cal.evidence_for(th):.3f}",
                len(found),
                max(map(len, found), default=0),
                len(found_pairs),
                f"{prec:.3f}",
                f"{rec:.3f}",
                other_shots,
                false_unrelated,
                f"{exact} of {n_sources}",
                f"{wall:.1f} s",
            ]
        )
        print(
            f"dedup ≥{th}%{' --verify' if verify else ''}: {len(found)} groups, pairwise precision "
            f"{prec:.3f} recall {rec:.3f}, {other_shots} pairs of other shots, {wall:.1f}s",
            file=sys.stderr,
        )
    large = (
        time_large(args.large, args.budget_s)
        if (args.large / "manifest.json").exists()
        else f"(no index at {args.large}: run bench.scale first)\n"
    )
    print(large, file=sys.stderr)
    text = started + (
        f"\n{len(paths)} images: {n_sources} sources (one per UKBench group, 50 Holidays groups) with "
        f"{n_copies} copies (2 × `random_edit` strength 0.5 each, plus a 60% rescale + JPEG 75 for every "
        f"third), the {n_other} other shots of the sources' objects and scenes (the rest of their groups), "
        "and 700 unrelated images (one per other Holidays group, Wang photos); "
        f"{len(true_pairs)} true pairs. Index built with `vecsearch build` (default settings) in "
        f"{t_build:.0f} s. Pairwise: precision = found pairs that are true / found pairs; recall = true "
        "pairs found / true pairs; every pair inside a found group counts (a group is a keeper and the "
        "images within the threshold of it). A pair of two shots of one scene is a false pair (neither "
        "is a copy of the other) and is counted apart: these are what a user must not be offered to "
        "delete.\n\n"
        + md_table(
            [
                "`vecsearch dedup --min-similarity`",
                "reach: distance over the image's scale (`evidence_for`)",
                "groups",
                "largest",
                "pairs",
                "pairwise precision",
                "pairwise recall",
                "pairs of two shots of one scene",
                "false pairs between two 'unrelated' images",
                "true groups found exactly",
                "wall (process)",
            ],
            rows,
        )
        + "\nLargest index: "
        + large
        + f"\nWhole run: {time.perf_counter() - t_all:.0f} s. Load average at the end: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.\n"
    )
    print(text)
    write_section("dedup", text)


if __name__ == "__main__":
    main()

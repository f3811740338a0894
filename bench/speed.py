"""Build and query speed on the UKBench subset (1000 JPEGs, 640x480), with its yardsticks in the same run.

    python -m bench.speed [--data /work/shared/data] [--runs 10]

Yardsticks: pHash extraction of the same files (what a user could run instead), and the import floor
of a CLI query (``python -c "import numpy, cv2, faiss, pyarrow"``), which no ``vecsearch query``
process can beat; queries are timed with and without ``--verify``. Files are read once beforehand
so the page cache is warm for every timing.
Replaces the ``speed`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import vecsearch
from bench.results import header, md_table, write_section
from vecsearch.evaluate import load_labelled_set, phash_bits

FLOOR = "import numpy, cv2, faiss, pyarrow"
VERIFIED = 200  # queries timed with verification (each checks 20 candidates' files)


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def median_walls(commands: list[list[str]], runs: int, env: dict | None = None) -> list[float]:
    """Median wall time of each process, start to exit; runs alternate between the commands so that
    a change in machine load hits all of them alike (one untimed warm-up round first)."""
    times: list[list[float]] = [[] for _ in commands]
    for i in range(runs + 1):
        for cmd, out in zip(commands, times):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            if i:
                out.append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


#: How a process finds vecsearch's own modules: compiled ahead, as ``pip install`` leaves them (or
#: the first run of an editable install), or compiled by every process, as where
#: PYTHONDONTWRITEBYTECODE is set and no .pyc was ever written (this machine's default).
BYTECODE = {True: "vecsearch's modules compiled ahead (.pyc)", False: "compiled by every process (no .pyc)"}


@contextmanager
def bytecode(cached: bool) -> Iterator[dict]:
    """The environment for timed processes, with vecsearch's .pyc files present or absent; no
    process writes new ones, and none are left behind."""
    package = Path(vecsearch.__file__).parent

    def clear() -> None:
        for d in package.rglob("__pycache__"):
            shutil.rmtree(d, ignore_errors=True)

    clear()
    if cached:
        compileall.compile_dir(package, quiet=1)
    try:
        yield os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}
    finally:
        clear()


def vecsearch_command() -> list[str]:
    """The installed console script next to this interpreter (what users run)."""
    script = Path(sys.executable).with_name("vecsearch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vecsearch.cli"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "work")
    ap.add_argument("--runs", type=int, default=10, help="process runs per CLI timing")
    args = ap.parse_args()
    paths = load_labelled_set(args.data / "ukbench").paths
    n = len(paths)
    for p in paths:
        Path(p).read_bytes()
    started = header("Speed (bench/speed.py)")

    builds = {}
    for label, workers in (("default workers (all cores)", None), ("workers=0 (in process)", 0)):
        d = args.work / f"speed-{workers}"
        shutil.rmtree(d, ignore_errors=True)
        builds[label], index = timed(vecsearch.build, paths, d, workers=workers, quiet=True)
        print(f"build, {label}: {builds[label]:.1f}s", file=sys.stderr)
    t_encode, encoded = timed(index.encoder.encode_files, paths)
    t_phash, _ = timed(phash_bits, paths)
    print(f"encode only {t_encode:.1f}s, pHash {t_phash:.1f}s", file=sys.stderr)

    query = [*vecsearch_command(), "query", paths[0], "--index", str(index.path)]
    rounds: dict[bool, list[list[float]]] = {True: [], False: []}
    for _ in range(args.runs):  # the two kinds alternate round by round, so load hits both alike
        for cached, walls in rounds.items():
            with bytecode(cached) as env:
                walls.append(
                    median_walls([[sys.executable, "-c", FLOOR], query, [*query, "--verify"]], 1, env)
                )
    cold = {cached: [statistics.median(w) for w in zip(*walls)] for cached, walls in rounds.items()}
    t_many, _ = timed(index.search_many, paths, k=10)
    checked = paths[:: max(1, n // VERIFIED)]
    t_verified, _ = timed(index.search_many, checked, k=10, verify=True)
    t_vectors, _ = timed(index.search_vectors, encoded.vectors, k=10)

    rows = [
        [f"vecsearch.build, {label}", f"{t:.1f} s", f"{n / t:.1f}", f"{t / t_phash:.1f}x"]
        for label, t in builds.items()
    ]
    rows += [
        [
            "Encoder.encode_files only (trained encoder, 1 process)",
            f"{t_encode:.1f} s",
            f"{n / t_encode:.1f}",
            f"{t_encode / t_phash:.1f}x",
        ],
        ["imagehash.phash (PIL decode, 1 process)", f"{t_phash:.1f} s", f"{n / t_phash:.1f}", "1.0x"],
    ]
    text = started + (
        f"\nUKBench subset: {n} JPEGs, 640x480. Builds are from scratch (encoder training, encoding, "
        "index, calibration: everything `vecsearch build` does).\n\n"
        + md_table(["extraction", "wall time", "images/s", "time vs pHash"], rows)
        + "\n"
        + md_table(
            ["query", "time", "vs import floor"],
            [
                *(
                    [
                        f"`vecsearch query IMG --index DIR{flag}` process, {BYTECODE[cached]}, median of "
                        f"{args.runs} rounds (each: the floor, the query, the query with --verify; the two "
                        "kinds alternate)",
                        f"{1000 * t_query:.0f} ms",
                        f"{t_query / t_floor:.2f}x the {1000 * t_floor:.0f} ms floor",
                    ]
                    for cached, (t_floor, *t_queries) in cold.items()
                    for flag, t_query in zip(("", " --verify"), t_queries)
                ),
                [
                    f"`Index.search_many` per query ({n} queries, k=10: decode + encode + search)",
                    f"{1000 * t_many / n:.1f} ms",
                    "",
                ],
                [
                    f"`Index.search_many(verify=True)` per query ({len(checked)} of them, k=10: and the top "
                    "20 candidates' keypoints checked)",
                    f"{1000 * t_verified / len(checked):.1f} ms",
                    f"{t_verified / len(checked) / (t_many / n):.1f}x unverified",
                ],
                [
                    f"`Index.search_vectors` per query ({n} precomputed vectors, k=10: search + %, paths)",
                    f"{1000 * t_vectors / n:.3f} ms",
                    "",
                ],
            ],
        )
        + f'\nImport floor: `python -c "{FLOOR}"`, median of {args.runs}. Load average at the end: '
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine slows every figure).\n"
    )
    print(text)
    write_section("speed", text)


if __name__ == "__main__":
    main()

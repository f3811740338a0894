"""Where encoding time goes, and what shipping the encoder to workers costs.

    python -m bench.embed_speed [--n 300] [--rounds 5]

`Encoder.encode` on already-decoded arrays vs `Encoder.encode_files` on the same files (one process,
one thread: what each build worker does), so decode's share of a worker's time is visible. Then the
encoder as a parcel: its pickled size, pickle + unpickle time, the start of a process-pool worker
(``vecsearch.executors._pool``, forkserver) that receives it in its initializer vs one that receives
a tiny object, and ``client.scatter(encoder, broadcast=True)`` on a real ``LocalCluster`` of 2
single-threaded workers. Replaces the ``embed_speed`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, as in a worker
    os.environ[_var] = "1"

import argparse
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

import vecsearch
from bench.data import trained_encoder, ukbench_paths, warm
from bench.results import header, md_table, write_section
from vecsearch import executors, images


def median_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def pool_start(shared: object, workers: int) -> float:
    """Seconds from creating the pool to every worker having answered once."""
    t = time.perf_counter()
    pool = executors._pool(vecsearch.Encoder.encode_files, shared, workers)
    try:
        list(pool.map(time.sleep, [0.05] * workers))  # the sleeps overlap only once every worker is up
        return time.perf_counter() - t - 0.05
    finally:
        pool.shutdown()


PRELOAD_PROBE = """
import statistics, sys, time
from vecsearch import executors
from vecsearch.encoder import Encoder
if __name__ == "__main__":
    # The forkserver preloads the modules of the work: Encoder.encode_files's, or none for time.sleep.
    work = Encoder.encode_files if sys.argv[1] == "preload" else time.sleep
    executors._pool(work, {}, 1).shutdown()  # start the forkserver
    times = []
    for _ in range(int(sys.argv[2])):
        t = time.perf_counter()
        pool = executors._pool(work, {}, 2)
        list(pool.map(time.sleep, [0.05] * 2))
        times.append(time.perf_counter() - t - 0.05)
        pool.shutdown()
    print(statistics.median(times))
"""


def preload_starts(rounds: int) -> dict[str, float]:
    """2-worker pool start in a script run as a file, with the forkserver's default preload vs
    preloading vecsearch.encoder (what a build's pool does).

    Python 3.11's default forkserver preload of ``__main__`` does not take effect (the forkserver is handed
    'init_main_from_path', not the 'main_path' it looks for), so every worker imports numpy, cv2, … itself.
    """
    script = Path(tempfile.gettempdir()) / f"vecsearch-preload-{os.getpid()}.py"
    script.write_text(PRELOAD_PROBE)
    try:
        return {
            mode: float(
                subprocess.run(
                    [sys.executable, str(script), mode, str(rounds)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for mode in ("default", "preload")
        }
    finally:
        script.unlink()


def scatter_times(enc: vecsearch.Encoder, rounds: int) -> dict[str, float]:
    """First broadcast scatter as ``executors._run_dask`` does it, then medians of fresh (hash=False) ones."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        t = time.perf_counter()
        client.scatter(enc, broadcast=True)
        first = time.perf_counter() - t
        again = median_time(lambda: client.scatter(enc, broadcast=True, hash=False), rounds)
        tiny = median_time(lambda: client.scatter([1, 2, 3], broadcast=True, hash=False), rounds)
    return {"first": first, "again": again, "tiny": tiny}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="images for the encode timings")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    paths = ukbench_paths()[: args.n]
    warm(paths)
    enc = vecsearch.Encoder.load(trained_encoder())
    started = header("Encoder: encode vs decode, and shipping it to workers (bench/embed_speed.py)")

    arrays = [images.load(p, enc.config.max_side)[0] for p in paths]
    enc.encode(arrays[:8]), enc.encode_files(paths[:8])  # warm-up (scipy import, caches)
    rates = {}
    for _ in range(2):  # alternate, so a change in machine load hits both alike
        for name, fn in (("arrays", lambda: enc.encode(arrays)), ("files", lambda: enc.encode_files(paths))):
            t = time.perf_counter()
            fn()
            rates.setdefault(name, []).append(len(paths) / (time.perf_counter() - t))
    t = time.perf_counter()
    for p in paths:
        images.load(p, enc.config.max_side)
    decode = len(paths) / (time.perf_counter() - t)
    arr, files = statistics.mean(rates["arrays"]), statistics.mean(rates["files"])

    blob = pickle.dumps(enc)
    t_dump = median_time(lambda: pickle.dumps(enc), args.rounds)
    t_load = median_time(lambda: pickle.loads(blob), args.rounds)
    tiny = {"tiny": 1}
    starts = {}
    pool_start(tiny, 1)  # starts the forkserver (imports __main__ once): not a per-pool cost
    for _ in range(args.rounds):  # alternate encoder / tiny, 1 and 2 workers
        for workers in (1, 2):
            for name, shared in (("encoder", enc), ("tiny", tiny)):
                starts.setdefault((name, workers), []).append(pool_start(shared, workers))
    start = {k: statistics.median(v) for k, v in starts.items()}
    preload = preload_starts(args.rounds)
    scatter = scatter_times(enc, args.rounds)
    print(rates, decode, len(blob), t_dump, t_load, start, preload, scatter, file=sys.stderr)

    ms = lambda s: f"{1000 * s:.0f} ms"  # noqa: E731
    text = started + (
        f"\nOne process, one thread (cv2 and BLAS), {len(paths)} UKBench JPEGs (640x480); two alternating "
        "rounds, mean.\n\n"
        + md_table(
            ["call", "images/s", "ms/image"],
            [
                [
                    f"`Encoder.encode(arrays)` (already decoded BGR at ≤ {enc.config.max_side} px)",
                    f"{arr:.1f}",
                    f"{1000 / arr:.1f}",
                ],
                [
                    "`Encoder.encode_files(paths)` (read + hash + decode + encode)",
                    f"{files:.1f}",
                    f"{1000 / files:.1f}",
                ],
                [
                    f"`images.load(path, {enc.config.max_side})` alone (decode)",
                    f"{decode:.1f}",
                    f"{1000 / decode:.1f}",
                ],
            ],
        )
        + f"\nDecode is {100 * (1 / files - 1 / arr) * files:.0f}% of `encode_files` time here; the rest is "
        "feature extraction + VLAD/PCA.\n\n"
        + md_table(
            ["shipping the encoder", "value"],
            [
                ["pickled size (`pickle.dumps(encoder)`)", f"{len(blob) / 2**20:.1f} MB"],
                [f"pickle.dumps / pickle.loads, median of {args.rounds}", f"{ms(t_dump)} / {ms(t_load)}"],
                [
                    "ProcessPool (`executors._pool`, forkserver) start to first answer, 1 worker: encoder vs "
                    "tiny initarg",
                    f"{ms(start[('encoder', 1)])} vs {ms(start[('tiny', 1)])}",
                ],
                ["same, 2 workers", f"{ms(start[('encoder', 2)])} vs {ms(start[('tiny', 2)])}"],
                [
                    "2-worker pool start, script run as a file: default forkserver preload vs "
                    "`set_forkserver_preload(['vecsearch.executors'])`",
                    f"{ms(preload['default'])} vs {ms(preload['preload'])}",
                ],
                [
                    "`client.scatter(encoder, broadcast=True)`, LocalCluster 2 workers × 1 thread: first (as "
                    "the builder does)",
                    ms(scatter["first"]),
                ],
                [
                    f"same, fresh copies (`hash=False`), median of {args.rounds}; a tiny list for comparison",
                    f"{ms(scatter['again'])}; {ms(scatter['tiny'])}",
                ],
            ],
        )
        + f"\nPool start times are medians of {args.rounds} alternating rounds, after the forkserver itself "
        "is up. Python 3.11's forkserver is "
        "meant to preload the caller's `__main__`, but that does not take effect, so each new worker imports "
        "numpy, cv2, … itself "
        "(the preload row: in a fresh process each, median of the same rounds). Load average at the end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + ".\n"
    )
    print(text)
    write_section("embed_speed", text)


if __name__ == "__main__":
    main()

"""``vecsearch serve`` under load: latency and throughput of POST /api/search, and a run of
requests while ``add`` commits new versions, beside in-process search and a CLI query process.

    python -m bench.serve [--scale-index DIR] [--requests 2000] [--churn 20000] [--every 10]

Queries are UKBench JPEGs (640x480) sent as raw image bodies by httpx clients in threads of this
process, which shares the 2 cores with the server: the figures include the clients' own cost. The
1,000-image index is UKBench itself; the 1,000,000-vector one is what ``bench/scale.py`` builds
(``--scale-index``; skipped where it is missing). The churn run serves a copy of the 1,000-image
index while ``vecsearch add`` commits a few Holidays photos every ``--every`` seconds. Replaces
the ``serve`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

import vecsearch
from bench.results import header, md_table, write_section
from bench.speed import BYTECODE, FLOOR, bytecode, median_walls, vecsearch_command
from vecsearch.evaluate import load_labelled_set

QUERIES = 200  # distinct query images, cycled through
JPEG = {"content-type": "image/jpeg"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A ``vecsearch serve --quiet`` process, ready once /healthz answers."""

    def __init__(self, index: Path):
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [*vecsearch_command(), "serve", "--index", str(index), "--port", port, "--quiet"],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"vecsearch serve --index {index} did not start")
            time.sleep(0.2)

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def load(url: str, bodies: list[bytes], requests: int, clients: int) -> dict:
    """``requests`` POST /api/search spread over ``clients`` threads: latencies, wall, errors."""
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    versions: set[int] = set()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while (n := next(counter)) < requests:
                t = time.perf_counter()
                try:
                    r = c.post("/api/search", params={"k": 10}, content=bodies[n % len(bodies)], headers=JPEG)
                    ok = r.status_code == 200
                    version = r.json()["version"] if ok else None
                    why = None if ok else f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as e:
                    version, why = None, repr(e)
                took = time.perf_counter() - t
                with lock:
                    latencies.append(took)
                    if why:
                        errors.append(why)
                    else:
                        versions.add(version)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    ms = np.array(latencies) * 1000
    return dict(
        p50=float(np.percentile(ms, 50)),
        p99=float(np.percentile(ms, 99)),
        qps=requests / wall,
        errors=errors,
        versions=versions,
        n=requests,
    )


def in_process(index_dir: Path, paths: list[str]) -> tuple[float, float]:
    """ms per query of ``Index.search_many`` over the queries at once, and one at a time."""
    idx = vecsearch.open(index_dir)
    idx.search_many(paths[:20], k=10)  # warm
    t = time.perf_counter()
    idx.search_many(paths, k=10)
    batch = (time.perf_counter() - t) / len(paths)
    t = time.perf_counter()
    for p in paths:
        idx.search_many([p], k=10)
    single = (time.perf_counter() - t) / len(paths)
    return 1000 * batch, 1000 * single


def churn(index: Path, bodies: list[bytes], new: list[str], requests: int, every: float, work: Path) -> dict:
    """``requests`` from 8 clients while ``vecsearch add`` commits a few new images every ``every`` s."""
    server = Served(index)
    load(server.url, bodies, 100, 2)  # warm
    start_rss, rss, commits, failed_adds = server.rss(), [], [], []
    done = threading.Event()

    def committer() -> None:
        for n in itertools.count():
            if done.wait(every):
                return
            batch = work / f"add-{n}"
            batch.mkdir(parents=True, exist_ok=True)
            for p in new[5 * n : 5 * n + 5]:
                shutil.copy(p, batch / Path(p).name)
            p = subprocess.run(
                [*vecsearch_command(), "add", str(batch), "--index", str(index), "--quiet"],
                capture_output=True,
                text=True,
            )
            (commits if p.returncode == 0 else failed_adds).append(p.stderr.strip()[-300:])

    def sampler() -> None:
        while not done.wait(1.0):
            rss.append(server.rss())

    helpers = [threading.Thread(target=committer), threading.Thread(target=sampler)]
    for h in helpers:
        h.start()
    t = time.perf_counter()
    result = load(server.url, bodies, requests, 8)
    wall = time.perf_counter() - t
    done.set()
    for h in helpers:
        h.join()
    result.update(
        start_rss=start_rss,
        end_rss=server.rss(),
        max_rss=max(rss, default=start_rss),
        commits=len(commits),
        failed_adds=failed_adds,
        wall=wall,
        images=httpx.get(server.url + "/api/info").json()["images"],
    )
    server.stop()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "serve")
    ap.add_argument(
        "--scale-index",
        type=Path,
        default=Path(__file__).parent / "work" / "scale" / "index-1000000",
        help="the 1,000,000-vector index bench/scale.py builds",
    )
    ap.add_argument("--requests", type=int, default=2000, help="requests per latency measurement")
    ap.add_argument("--churn", type=int, default=20000, help="requests of the run with commits")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between commits in that run")
    ap.add_argument("--runs", type=int, default=10, help="CLI query processes timed")
    args = ap.parse_args()
    started, t_all = header("Serving (bench/serve.py)"), time.perf_counter()

    ukbench = load_labelled_set(args.data / "ukbench").paths
    queries = ukbench[:: max(1, len(ukbench) // QUERIES)][:QUERIES]
    bodies = [Path(p).read_bytes() for p in queries]
    small = args.work / "ukbench"
    if not (small / "manifest.json").exists():
        vecsearch.build(ukbench, small, quiet=True)
    indexes = [("1,000 images (UKBench)", small)]
    if (args.scale_index / "manifest.json").exists():
        indexes.append(("1,000,000 vectors (bench/scale.py)", args.scale_index))
    else:
        print(f"{args.scale_index}: no index (run bench/scale.py first); skipping 1M", file=sys.stderr)

    rows, notes = [], []
    for label, index in indexes:
        server = Served(index)
        load(server.url, bodies, 100, 1)  # warm: page cache, first-call costs
        runs = {c: load(server.url, bodies, args.requests, c) for c in (1, 8)}
        server.stop()
        batch, single = in_process(index, queries)
        with bytecode(cached=True) as env:
            floor, query = median_walls(
                [
                    [sys.executable, "-c", FLOOR],
                    [*vecsearch_command(), "query", queries[0], "--index", str(index)],
                ],
                args.runs,
                env,
            )
        for c, r in runs.items():
            print(f"[{label}] {c} clients: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {r['qps']:.0f} q/s, "
                  f"{len(r['errors'])} errors", file=sys.stderr)  # fmt: skip
            notes += r["errors"][:3]
        rows.append(
            [
                label,
                f"{runs[1]['p50']:.1f} / {runs[1]['p99']:.1f} ms",
                f"{runs[1]['qps']:.0f}",
                f"{runs[8]['p50']:.1f} / {runs[8]['p99']:.1f} ms",
                f"{runs[8]['qps']:.0f}",
                f"{sum(len(r['errors']) for r in runs.values())}",
                f"{batch:.1f} ms / {single:.1f} ms",
                f"{1000 * query:.0f} ms ({query / floor:.2f}x the {1000 * floor:.0f} ms floor)",
                f"{1000 * query / runs[1]['p50']:.0f}x",
            ]
        )

    holidays = load_labelled_set(args.data / "holidays").paths
    copy = args.work / "churn"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(small, copy)
    c = churn(copy, bodies, holidays, args.churn, args.every, args.work / "churn-adds")
    print(f"churn: {c['n']} requests, {len(c['errors'])} errors, {c['commits']} commits, "
          f"RSS {c['start_rss'] / 2**20:.0f} → {c['end_rss'] / 2**20:.0f} MiB", file=sys.stderr)  # fmt: skip

    text = started + (
        f"\nPOST /api/search with one UKBench JPEG (640x480) as the raw body, k=10, cycling through "
        f"{len(bodies)} images; {args.requests} requests per figure after 100 warm-up ones. Clients are "
        "httpx threads in the bench process, on the same 2 cores as the server (their cost is in the "
        "figures). `search_many` is the same search in-process (decode, encode with the mirror, "
        "search, percentages), over all queries at once / one call per query; the CLI process is "
        "`vecsearch query IMG --index DIR`, median of "
        f'{args.runs}, alternating with the import floor `python -c "{FLOOR}"` ({BYTECODE[True]}).\n\n'
        + md_table(
            [
                "index",
                "1 client p50 / p99",
                "1 client q/s",
                "8 clients p50 / p99",
                "8 clients q/s",
                "errors",
                "`search_many` per query: batch / single",
                "one `vecsearch query` process",
                "process vs served p50",
            ],
            rows,
        )
        + f"\nWith commits: {c['n']:,} requests from 8 clients over {c['wall']:.0f} s while `vecsearch add` "
        f"committed {c['commits']} new versions (5 Holidays photos each, one every {args.every:g} s; "
        f"{len(c['failed_adds'])} adds failed): **{len(c['errors'])} errors**, "
        f"p50 {c['p50']:.1f} ms, p99 {c['p99']:.1f} ms, {c['qps']:.0f} q/s, versions answered from "
        f"{min(c['versions'], default=0)} to {max(c['versions'], default=0)}, {c['images']} images at the "
        "end. "
        f"Server resident memory: {c['start_rss'] / 2**20:.0f} MiB at the start, "
        f"{c['end_rss'] / 2**20:.0f} MiB at the end (highest sample {c['max_rss'] / 2**20:.0f} MiB).\n"
        + "".join(f"\n- error: `{e}`" for e in (notes + c["errors"][:3] + c["failed_adds"][:3]))
        + f"\n\nWhole run: {time.perf_counter() - t_all:.0f} s. Load average at the end: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.\n"
    )
    print(text)
    write_section("serve", text)


if __name__ == "__main__":
    main()

"""Crash and concurrency drills shared by tests/test_crash.py and bench/reliability.py.

``kill_trials`` SIGKILLs `vecsearch build` / `add` / `remove` processes at random moments and checks the index
after each; ``concurrent_queries`` runs reader processes while the caller's writer commits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import vecsearch
from vecsearch import pathnames
from vecsearch.check import check


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "vecsearch.cli", *map(str, args)]


@dataclass
class KillReport:
    trials: int = 0
    killed: int = 0
    failures: list[str] = field(default_factory=list)


def kill_trials(base: Path, more: Path, idx: Path, encoder: Path, trials: int, seed: int = 0) -> KillReport:
    """Cycle build, add, remove runs (so every add has files to add), each killed after a random
    part of the time a whole build takes."""
    rng = np.random.default_rng(seed)
    build = cli(
        "build", base, "--index", idx, "--encoder", encoder, "--workers", 0, "--batch-size", 4, "--quiet"
    )
    add = cli("add", more, "--index", idx, "--workers", 0, "--batch-size", 4, "--quiet")
    remove = cli("remove", more, "--index", idx, "--quiet")
    t0 = time.time()
    subprocess.run(build, check=True)
    duration = time.time() - t0
    report = KillReport()
    for trial in range(trials):
        before = json.loads((idx / "manifest.json").read_text())["version"]
        # where the add before it was killed before committing, a remove has nothing to remove
        # and says so (exit 1, nothing changed)
        idle = trial % 3 == 2 and not _holds(idx, more)
        p = subprocess.Popen(
            (build, add, remove)[trial % 3], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.05, 1.0) * duration)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            report.killed += 1
        p.wait()
        report.trials += 1
        why = p.stderr.read().decode()
        said_idle = idle and p.returncode == 1 and "nothing removed" in why
        if p.returncode not in (0, -signal.SIGKILL) and not said_idle:
            report.failures.append(f"trial {trial}: exit {p.returncode}: {why[-300:]}")
        problems = check(idx)
        if problems:
            report.failures.append(f"trial {trial}: {problems}")
            continue
        index = vecsearch.open(idx)
        if not index.faiss.ntotal == len(index.metadata()) == index.manifest.counts.images:
            report.failures.append(f"trial {trial}: counts disagree")
        if index.version.number not in (before, before + 1):
            report.failures.append(f"trial {trial}: version {before} became {index.version.number}")
    return report


def _holds(idx: Path, folder: Path) -> bool:
    """Whether the index holds an image under ``folder``."""
    under = str(folder) + os.sep
    return any(p.startswith(under) for p in pathnames.of(vecsearch.open(idx).metadata()))


READER = """
import sys, time, vecsearch
end = time.time() + float(sys.argv[2]); n = errors = 0
while time.time() < end:
    try:
        ix = vecsearch.open(sys.argv[1])
        hits = ix.search(sys.argv[3], k=5)
        assert len(hits) == 5 and hits[0].similarity > 99 and ix.faiss.ntotal == ix.manifest.counts.images
        n += 1
    except Exception as e:
        errors += 1; print(repr(e), file=sys.stderr)
print(n, errors)
"""


def concurrent_queries(idx: Path, queries: list[str], seconds: float, write) -> tuple[int, int, int, str]:
    """Reader processes query ``idx`` for ``seconds`` while ``write()`` is called in a loop here.

    Returns (queries answered, query errors, writes committed, stderr of the readers).
    """
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(idx), str(seconds + 5), q],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for q in queries
    ]
    writes = 0
    end = time.time() + seconds
    while time.time() < end:
        writes += write()
    answered = errors = 0
    messages = ""
    for r in readers:
        out, err = r.communicate(timeout=300)
        n, e = map(int, out.split())
        answered, errors, messages = answered + n, errors + e, messages + err
    return answered, errors, writes, messages

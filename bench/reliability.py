"""Reliability drills with their counts: hostile files, SIGKILLed writers, queries during writes.

    python -m bench.reliability [--trials 40] [--seconds 30]

Uses the generators the tests use (tests/hostile.py, tests/torture.py) at a larger scale and
records how each hostile file was handled, the kill trials and failures, and the concurrent
reads, writes and errors in the ``reliability`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hostile import make_corpus
from torture import concurrent_queries, kill_trials

import vecsearch
from bench.results import header, md_table, write_section
from vecsearch.encoder import example_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enc = tmp / "encoder"
        vecsearch.train(example_images(), enc)
        expect = make_corpus(tmp / "hostile", next(p for p in example_images() if "chelsea" in p))
        index = vecsearch.build(
            [tmp / "hostile"], tmp / "hidx", encoder=enc, workers=2, batch_size=4, quiet=True
        )
        indexed = {os.path.basename(p) for p in index.metadata()["path"].to_pylist()}
        t = index.skipped()
        skipped = {
            os.path.basename(p).replace("\\xff\\xfe", "\udcff\udcfe"): r
            for p, r in zip(t["path"].to_pylist(), t["reason"].to_pylist())
        }
        rows, wrong = [], 0
        for name, what in sorted(expect.items()):
            got = "indexed" if name in indexed else f"skipped: {skipped.get(name, '?')}"
            ok = (
                (what == "index" and name in indexed)
                or (what == "skip" and name in skipped)
                or what == "either"
            )
            wrong += not ok
            rows.append([repr(name), what, got, "ok" if ok else "**wrong**"])

        for part in ("base", "more"):
            (tmp / part).mkdir()
            for i in range(2):
                for p in example_images():
                    shutil.copy(p, tmp / part / f"{i}-{Path(p).name}")
        kills = kill_trials(tmp / "base", tmp / "more", tmp / "kidx", enc, args.trials)

        cidx = tmp / "cidx"
        vecsearch.build([tmp / "base"], cidx, encoder=enc, workers=0, quiet=True)

        def write() -> int:
            vecsearch.add([tmp / "more"], cidx, workers=0, quiet=True)
            vecsearch.remove([tmp / "more"], cidx)
            return 2

        answered, errors, writes, messages = concurrent_queries(
            cidx, example_images()[:2], args.seconds, write
        )

    body = header("Reliability drills (bench/reliability.py)")
    body += f"\n### Hostile files: {len(expect)} tried, {wrong} handled wrongly\n\n"
    body += md_table(["file", "expected", "what vecsearch did", ""], rows)
    body += (
        f"\n### Kill trials: {kills.trials} runs cycling build / add / remove, {kills.killed} SIGKILLed at "
        "random moments, "
        f"{len(kills.failures)} failures (index failed `vecsearch check`, counts disagreed, or a version was "
        "half-written)\n"
    )
    body += "".join(f"\n- {f}" for f in kills.failures)
    body += (
        f"\n\n### Concurrent use: 2 reader processes answered {answered} queries while {writes} add/remove "
        "versions were "
        f"committed; {errors} query errors\n"
    )
    if messages.strip():
        body += f"\n```\n{messages.strip()[:2000]}\n```\n"
    print(body)
    write_section("reliability", body)


if __name__ == "__main__":
    main()

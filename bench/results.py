"""Shared by the benches: where the run happened, and replacing one bench's section of RESULTS.md.

Each bench owns the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``, so several
benches (and hand-written notes) can share the file and a re-run replaces only its own figures.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "RESULTS.md"


def command_line() -> str:
    """The command that produced this run, as one would type it again."""
    return " ".join(["python -m", __import__("__main__").__spec__.name, *map(shlex.quote, sys.argv[1:])])


def machine() -> str:
    """Cores, CPU model, load average and code version: figures mean little without them."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    cores = f"{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))})"
    return f"{cores}, {model}; load average {load}; {git_version()}"


def git_version() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=RESULTS.parent.parent, capture_output=True, text=True
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--", "vecsearch")
    changes = " + uncommitted changes in vecsearch/" if dirty else ""
    return f"commit {git('rev-parse', '--short', 'HEAD') or '?'}{changes}"


def header(title: str) -> str:
    return (
        f"## {title}\n\n"
        f"- command: `{command_line()}` (from the repository root)\n"
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}\n"
        f"- machine: {machine()}\n"
    )


def md_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the marked section ``name`` of RESULTS.md, keeping everything else."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# vecsearch benchmark results\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

"""``<index>/.build``: the resumable work of an unfinished build or add.

It holds the encoder the job uses and one Parquet chunk per finished batch (``vectors.chunk``:
vector table, ids, calibration copies). A job started again with the same inputs finds its key
unchanged and encodes only the paths that no chunk holds; with other inputs it starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import pathnames
from .files import write_bytes
from .manifest import WORK
from .vectors import write_parquet

NAME = WORK
#: Part of every key: chunks written by another layout of this directory are not resumed.
LAYOUT = "chunks-2"


def key(kind: str, paths: Sequence[str], extra: str = "") -> str:
    """What a job's work directory is valid for: its kind, its inputs in order, and ``extra``."""
    h = hashlib.sha1(f"{LAYOUT}:{kind}:{extra}".encode())
    for p in paths:
        h.update(p.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


class WorkDir:
    def __init__(self, root: Path, key: str):
        self.path = root / NAME
        state = self.path / "state.json"
        if self.path.exists():
            try:
                same = json.loads(state.read_text()).get("key") == key
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        if not state.exists():
            write_bytes(state, json.dumps({"key": key}).encode())

    @property
    def encoder_path(self) -> Path:
        return self.path / "encoder.npz"

    def chunks(self) -> list[Path]:
        return sorted(self.path.glob("chunk-*.parquet"))

    def next_number(self) -> int:
        return max((int(c.stem.split("-")[1]) for c in self.chunks()), default=-1) + 1

    def done_paths(self) -> set[str]:
        done: set[str] = set()
        for c in self.chunks():
            try:
                done.update(pathnames.of(pq.read_table(c, columns=["path", pathnames.BYTES])))
            except (OSError, pa.ArrowInvalid):
                c.unlink()  # only a chunk of a crash can be unreadable: do it again
        return done

    def write_chunk(self, number: int, table: pa.Table) -> None:
        write_parquet(table, self.path / f"chunk-{number:06d}.parquet")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

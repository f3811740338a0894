"""Inputs shared by the throughput and memory benches: the UKBench paths, one trained encoder
(cached in bench/work so every bench encodes with the same state), and page-cache warming."""

from __future__ import annotations

import hashlib
from pathlib import Path

import vecsearch
from vecsearch.evaluate import load_labelled_set

DATA = Path("/work/shared/data")
WORK = Path(__file__).parent / "work"


def ukbench_paths(data: Path = DATA) -> list[str]:
    return load_labelled_set(data / "ukbench").paths


def _encoder_code() -> str:
    """Hash of the encoder's source: vecsearch/ is being edited, and an encoder of older code may
    not load or match."""
    root = Path(vecsearch.__file__).parent
    return hashlib.sha1(
        b"".join(f.read_bytes() for f in [root / "encoder.py", *sorted((root / "features").glob("*.py"))])
    ).hexdigest()[:10]


def trained_encoder(paths: list[str] | None = None) -> Path:
    """An encoder trained once with ``vecsearch.train`` on UKBench, cached per version of the encoder code."""
    out = WORK / f"encoder-ukbench-{_encoder_code()}" / "encoder.npz"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        vecsearch.train(paths or ukbench_paths(), out)
    return out


def warm(paths: list[str]) -> int:
    """Read every file once so that timings compare decoding, not the disk; returns total bytes."""
    return sum(len(Path(p).read_bytes()) for p in paths)

"""Shared fixtures: real photos (the examples vecsearch ships), edited copies, bad files, built indexes."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

import vecsearch
from vecsearch.edits import crop, jpeg, rescale
from vecsearch.encoder import Encoder, example_images

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCRIPT = Path(sys.executable).with_name("vecsearch")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail, naming them, where the tests left a process running: a pool worker left behind keeps
    the interpreter from exiting (its pool's manager thread waits for it), which CI would show only
    as a timeout. multiprocessing's own helpers (the fork server, the resource tracker) live until
    the interpreter exits; their children do not. The rest are killed, so that pytest can exit."""
    helpers = {p.pid for p in psutil.Process().children() if _helper(p)}  # their forks share their cmdline
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in helpers]
    left = psutil.wait_procs(left, timeout=15)[1]
    if not left:
        return
    names = ", ".join(f"{p.pid} ({' '.join(_cmdline(p))[:100]})" for p in left)
    sys.stderr.write(f"\nthe tests left {len(left)} process(es) running: {names}\n")
    for p in left:
        p.kill()
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return ["?"]


def _helper(p: psutil.Process) -> bool:
    line = " ".join(_cmdline(p))
    return (
        "from multiprocessing.forkserver import" in line
        or "from multiprocessing.resource_tracker import" in line
    )


def script() -> str:
    """The installed ``vecsearch`` command."""
    return str(SCRIPT) if SCRIPT.exists() else shutil.which("vecsearch")


def vs(*args, cwd=None, timeout=120):
    p = subprocess.run([script(), *map(str, args)], capture_output=True, cwd=cwd, timeout=timeout)
    p.out, p.err = p.stdout.decode("utf-8", "surrogateescape"), p.stderr.decode("utf-8", "surrogateescape")
    assert "Traceback" not in p.err, p.err
    return p


def snapshot(root: Path) -> dict:
    """Every file under root with its bytes' hash: equal snapshots mean nothing was changed."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def refused(p, *words):
    assert p.returncode == 2, (p.returncode, p.err)
    assert p.out == "", p.out
    lines = p.err.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), p.err


def mild_edit(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """Crop to 90%, rescale to 75%, JPEG 80: the copy a user expects to be found at ≥ 90%."""
    return jpeg(rescale(crop(img, 0.9, np.random.default_rng(seed)), 0.75), 80)


@pytest.fixture(scope="session")
def examples() -> list[str]:
    return example_images()


@pytest.fixture(scope="session")
def encoder(examples) -> Encoder:
    return Encoder.fit(examples)


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory, examples) -> Path:
    """All example photos but rocket.jpg (kept out to serve as an unrelated query)."""
    d = tmp_path_factory.mktemp("photos")
    (d / "sub").mkdir()
    for i, p in enumerate(examples):
        if "rocket" not in p:
            shutil.copy(p, (d / "sub" if i % 2 else d) / Path(p).name)
    return d


@pytest.fixture(scope="session")
def built(tmp_path_factory, photo_dir, encoder) -> vecsearch.Index:
    """An index of photo_dir built with the session encoder (training is the slow part)."""
    root = tmp_path_factory.mktemp("idx") / "photos"
    enc_file = encoder.save(root.parent / "encoder.npz")
    return vecsearch.build([photo_dir], root, encoder=enc_file, workers=0, quiet=True)


def write_bad_files(folder: Path, good: str) -> dict[str, str]:
    """Files no decoder can read, named by what is wrong with them."""
    folder.mkdir(parents=True, exist_ok=True)
    data = Path(good).read_bytes()
    files = {
        "empty.jpg": b"",
        "truncated.jpg": data[: len(data) // 3],
        "text.png": b"this is not an image\n" * 10,
        "random.jpg": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return {name: str(folder / name) for name in files}


def skip_without(name: str) -> Path:
    root = DATA / name
    if not (root / "groups.csv").is_file():
        pytest.skip(f"labelled set {root} not present")
    return root

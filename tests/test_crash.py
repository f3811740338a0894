"""SIGKILL builds and adds at random moments; queries run while writers commit. Nothing is lost."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import vecsearch
from vecsearch.check import check

pytestmark = pytest.mark.slow
TRIALS = 20


def _cli(*args):
    return [sys.executable, "-m", "vecsearch.cli", *map(str, args)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory, examples):
    """Two folders of real photos (copies under distinct names): a base and an addition."""
    root = tmp_path_factory.mktemp("crash")
    for part, n in (("base", 2), ("more", 2)):
        (root / part).mkdir()
        for i in range(n):
            for p in examples:
                shutil.copy(p, root / part / f"{i}-{Path(p).name}")
    return root


def test_killed_builds_and_adds_leave_a_sound_index(tmp_path, sources, built):
    enc = built.path  # an index directory serves as the encoder
    idx = tmp_path / "idx"
    rng = np.random.default_rng(0)
    t0 = time.time()
    subprocess.run(_cli("build", sources / "base", "--index", idx, "--encoder", enc, "--workers", 0, "--batch-size", 4, "--quiet"), check=True)
    duration = time.time() - t0  # kill moments are spread over the time a whole run takes here
    killed = 0
    for trial in range(TRIALS):
        if (idx / "manifest.json").exists() and trial % 2:
            cmd = _cli("add", sources / "more", "--index", idx, "--workers", 0, "--batch-size", 4, "--quiet")
        else:
            cmd = _cli("build", sources / "base", "--index", idx, "--encoder", enc, "--workers", 0, "--batch-size", 4, "--quiet")
        before = json.loads((idx / "manifest.json").read_text())["version"] if (idx / "manifest.json").exists() else None
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, 1.0) * duration)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait()
        assert p.returncode in (0, -signal.SIGKILL), p.stderr.read().decode()
        if (idx / "manifest.json").exists():
            assert check(idx) == [], f"trial {trial}: {check(idx)}"
            index = vecsearch.open(idx)
            assert index.faiss.ntotal == len(index.metadata()) == index.manifest["counts"]["images"]
            after = index.version.number
            assert before is None or after in (before, before + 1)  # the old version or the new one, whole
    assert killed >= TRIALS // 2, killed
    # Resuming: the same command run to the end gives the same index as an uninterrupted build.
    subprocess.run(_cli("build", sources / "base", "--index", idx, "--encoder", enc, "--workers", 0, "--quiet"), check=True)
    clean = vecsearch.build([sources / "base"], tmp_path / "clean", encoder=enc, workers=0, quiet=True)
    resumed = vecsearch.open(idx)
    assert resumed.metadata()["path"].to_pylist() == clean.metadata()["path"].to_pylist()
    assert resumed.metadata()["id"].to_pylist() == clean.metadata()["id"].to_pylist()


def test_queries_during_adds_and_removes_all_succeed(tmp_path, sources, built, examples):
    idx = tmp_path / "idx"
    vecsearch.build([sources / "base"], idx, encoder=built.path, workers=0, quiet=True)
    reader = tmp_path / "reader.py"
    reader.write_text(
        "import sys, time, vecsearch\n"
        "end = time.time() + float(sys.argv[2]); n = errors = 0\n"
        "while time.time() < end:\n"
        "    try:\n"
        "        ix = vecsearch.open(sys.argv[1])\n"
        "        hits = ix.search(sys.argv[3], k=5)\n"
        "        assert len(hits) == 5 and hits[0].similarity > 99 and ix.faiss.ntotal == ix.manifest['counts']['images']\n"
        "        n += 1\n"
        "    except Exception as e:\n"
        "        errors += 1; print(repr(e), file=sys.stderr)\n"
        "print(n, errors)\n"
    )
    readers = [subprocess.Popen([sys.executable, str(reader), str(idx), "25", examples[i]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 3)]
    writes = 0
    end = time.time() + 20
    while time.time() < end:
        vecsearch.add([sources / "more"], idx, workers=0, quiet=True)
        vecsearch.remove([sources / "more"], idx)
        writes += 2
    results = [r.communicate(timeout=120) for r in readers]
    for out, err in results:
        n, errors = map(int, out.split())
        assert errors == 0 and n > 0, err
    assert writes >= 4
    assert check(idx) == []


def test_a_second_writer_is_refused_clearly(tmp_path, sources, built):
    """While one process holds the writer lock, another's add/remove/build is refused at once."""
    from vecsearch import store

    idx = tmp_path / "idx"
    vecsearch.build([sources / "base"], idx, encoder=built.path, workers=0, quiet=True)
    with store.writer_lock(idx):
        for args in (["add", sources / "more"], ["remove", "--missing"], ["build", sources / "more"]):
            p = subprocess.run(_cli(*args, "--index", idx, "--workers", 0) if args[0] != "remove" else _cli(*args, "--index", idx), capture_output=True, text=True)
            assert p.returncode == 2 and "another vecsearch process is writing" in p.stderr, p.stderr
    assert vecsearch.open(idx).version.number == 1 and check(idx) == []

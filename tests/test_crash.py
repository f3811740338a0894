"""SIGKILL builds and adds at random moments; queries run while writers commit. Nothing is lost."""

import shutil
import subprocess
from pathlib import Path

import pytest
from torture import cli, concurrent_queries, kill_trials

import vecsearch
from vecsearch.check import check

pytestmark = pytest.mark.slow
TRIALS = 12  # four of each command; bench/reliability.py runs 40


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


def test_killed_builds_adds_and_removes_leave_a_sound_index(tmp_path, sources, built):
    idx = tmp_path / "idx"
    report = kill_trials(sources / "base", sources / "more", idx, built.path, TRIALS)
    assert report.failures == [] and report.trials == TRIALS
    assert report.killed >= TRIALS // 3, report.killed  # removes are quick: most finish before their kill
    # Resuming: the same command run to the end gives the same index as an uninterrupted build.
    subprocess.run(
        cli("build", sources / "base", "--index", idx, "--encoder", built.path, "--workers", 0, "--quiet"),
        check=True,
    )
    clean = vecsearch.build([sources / "base"], tmp_path / "clean", encoder=built.path, workers=0, quiet=True)
    resumed = vecsearch.open(idx)
    assert resumed.metadata()["path"].to_pylist() == clean.metadata()["path"].to_pylist()
    assert resumed.metadata()["id"].to_pylist() == clean.metadata()["id"].to_pylist()


def test_queries_during_adds_and_removes_all_succeed(tmp_path, sources, built, examples):
    idx = tmp_path / "idx"
    vecsearch.build([sources / "base"], idx, encoder=built.path, workers=0, quiet=True)

    def write() -> int:
        vecsearch.add([sources / "more"], idx, workers=0, quiet=True)
        vecsearch.remove([sources / "more"], idx)
        return 2

    answered, errors, writes, messages = concurrent_queries(idx, [examples[0], examples[3]], 20, write)
    assert errors == 0 and answered > 0, messages
    assert writes >= 4 and check(idx) == []


def test_a_second_writer_is_refused_clearly(tmp_path, sources, built):
    """While one process holds the writer lock, another's add/remove/build is refused at once."""
    from vecsearch import store

    idx = tmp_path / "idx"
    vecsearch.build([sources / "base"], idx, encoder=built.path, workers=0, quiet=True)
    with store.writer_lock(idx):
        for args in (["add", sources / "more"], ["remove", "--missing"], ["build", sources / "more"]):
            p = subprocess.run(
                cli(*args, "--index", idx, "--workers", 0)
                if args[0] != "remove"
                else cli(*args, "--index", idx),
                capture_output=True,
                text=True,
            )
            assert p.returncode == 2 and "another vecsearch process is writing" in p.stderr, p.stderr
    assert vecsearch.open(idx).version.number == 1 and check(idx) == []

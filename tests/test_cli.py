"""The vecsearch command as a user runs it: a real process, stdout for results, stderr for the rest."""

import csv
import io
import json
import subprocess
import sys

import cv2
import pytest
from conftest import mild_edit

from vecsearch.verify import MIN_INLIERS


def run(*args, ok=True):
    p = subprocess.run(
        [sys.executable, "-m", "vecsearch.cli", *map(str, args)], capture_output=True, text=True
    )
    assert "Traceback" not in p.stderr, p.stderr
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def test_query_formats(built, examples):
    q = next(p for p in examples if "coffee" in p)
    rows = [
        json.loads(line)
        for line in run("query", q, "--index", built.path, "--k", 3, "--format", "json").stdout.splitlines()
    ]
    assert len(rows) == 3 and rows[0]["path"].endswith("coffee.jpg") and rows[0]["similarity"] == 100.0
    assert [r["rank"] for r in rows] == [1, 2, 3]
    table = list(
        csv.DictReader(
            io.StringIO(run("query", q, "--index", built.path, "-k", 2, "--format", "csv").stdout)  # -k: --k
        )
    )
    assert table[0]["path"].endswith("coffee.jpg") and len(table) == 2
    text = run("query", q, "--index", built.path, "--k", 2).stdout
    assert "coffee.jpg" in text and "similarity" in text
    assert (
        run("query", q, "--index", built.path, "--min-similarity", 99.5, "--format", "json").stdout.count(
            "\n"
        )
        == 1
    )


def test_query_verify_shows_what_each_check_found(built, examples, tmp_path):
    copy = tmp_path / "coffee-copy.jpg"
    cv2.imwrite(str(copy), mild_edit(cv2.imread(next(p for p in examples if "coffee" in p))))
    out = run("query", copy, "--index", built.path, "--k", 3, "--verify", "--format", "json").stdout
    top, *others = [json.loads(line) for line in out.splitlines()]
    assert top["path"].endswith("coffee.jpg") and top["similarity"] >= 70.0, top
    assert top["inliers"] >= MIN_INLIERS and top["agreement"] > 0.9 and top["residual"] < 1.0, top
    assert all(isinstance(r["inliers"], int) and r["inliers"] < MIN_INLIERS for r in others), others
    assert all(r["agreement"] is None and r["residual"] is None for r in others), others
    header = run("query", copy, "--index", built.path, "--k", 1, "--verify", "--format", "csv").stdout
    assert header.splitlines()[0].endswith("inliers,agreement,residual")


def test_build_and_info(tmp_path, photo_dir, encoder):
    enc = encoder.save(tmp_path / "enc.npz")
    p = run("build", photo_dir, "--index", tmp_path / "idx", "--encoder", enc, "--workers", 0)
    assert "indexed 10 images" in p.stderr and p.stdout == ""
    info = json.loads(run("info", "--index", tmp_path / "idx", "--format", "json").stdout)
    assert info["images"] == 10 and info["index"]["factory"] == "IVF1,Flat"
    assert (
        info["encoder"]["config"]["colour_side"] == encoder.config.colour_side
    )  # every setting, even those older files leave out
    lone = info["calibration"]["lone"]  # the curve of a query's only near hit, and its pairs
    assert lone["positives"] >= 10 and lone["negatives"] >= 10
    table = run("info", "--index", tmp_path / "idx").stdout
    assert "recall@10" in table and f"for a query's only near hit, {lone['positives']} alike" in table


@pytest.mark.parametrize(
    "args, message",
    [
        (["query", "missing.jpg", "--index", "{idx}"], "query image not found"),
        (["query", "{bad}", "--index", "{idx}"], "not a recognised image"),
        (["query", "{good}", "--index", "{tmp}/nowhere"], "no index here"),
        (["query", "{good}", "--index", "{idx}", "--format", "xml"], "--format must be one of"),
        (["query", "{good}", "--index", "{idx}", "--k", "0"], "k must be"),
        (["build", "{tmp}/nothing-here", "--index", "{tmp}/new"], "no images found"),
        (["info", "--index", "{tmp}"], "not a vecsearch index"),
    ],
)
def test_errors_are_one_clean_line(tmp_path, built, examples, args, message):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    fill = {"idx": built.path, "bad": bad, "good": examples[0], "tmp": tmp_path}
    p = run(*[a.format(**fill) for a in args], ok=False)
    assert p.returncode == 2
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_help_describes_every_command():
    for cmd in ("build", "query", "info"):
        out = run(cmd, "--help").stdout
        assert "--index" in out and "default: indexes/default" in out, out

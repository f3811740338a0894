"""The command line as a new user meets it, item by item of the issue that asked for it: the
installed ``vecsearch`` script in a subprocess; exit status, stdout holding only results, and
nothing changed on disk where a command was refused."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import refused, script, snapshot, vs


@pytest.fixture(scope="module")
def enc_file(tmp_path_factory, encoder):
    return encoder.save(tmp_path_factory.mktemp("enc") / "encoder.npz")


@pytest.fixture(scope="module")
def built_once(tmp_path_factory, photo_dir, enc_file):
    """An index of the example photos, built through the command line."""
    root = tmp_path_factory.mktemp("cli") / "idx"
    p = vs("build", photo_dir, "--index", root, "--encoder", enc_file, "--workers", 0, "--quiet")
    assert p.returncode == 0, p.err
    return root


@pytest.fixture
def index(tmp_path, built_once):
    """A copy of that index of the test's own (an index directory holds no path of itself), so
    that a test may change or damage it."""
    return Path(shutil.copytree(built_once, tmp_path / "idx"))


def query_image(examples, name="coffee"):
    return next(p for p in examples if name in p)


# ---- 1: unknown flags are refused before anything happens -------------------------------------


def test_1_a_mistyped_flag_changes_nothing(index, photo_dir, tmp_path, examples):
    before = snapshot(index)
    refused(vs("remove", photo_dir, "--index", index, "--dry-run"), "--dry-run", "--missing")
    assert snapshot(index) == before  # byte-identical: nothing was removed
    p = vs("build", photo_dir, "--indx", tmp_path / "small", cwd=tmp_path)
    refused(p, "--indx", "did you mean --index?")
    assert not (tmp_path / "indexes").exists() and not (tmp_path / "small").exists()
    refused(vs("query", query_image(examples), "--index", index, "--quiet"), "--quiet")
    refused(vs("query", query_image(examples), "--idx", index), "--idx", "did you mean --index?")


def test_1_an_unknown_command_is_named():
    refused(vs("qurey", "x.jpg"), "unknown command 'qurey'", "did you mean 'query'?")


# ---- 2: paths stay the text typed ----------------------------------------------------------------


def test_2_paths_that_look_like_numbers_stay_paths(tmp_path, examples, enc_file):
    folder = tmp_path / "2024.10"
    folder.mkdir()
    for p in examples[:3]:
        shutil.copy(p, folder)
    shutil.copy(query_image(examples), tmp_path / "1e3")
    p = vs(
        "build", "2024.10", "--index", "12", "--encoder", enc_file, "--workers", 0, "--quiet", cwd=tmp_path
    )
    assert p.returncode == 0, p.err
    p = vs("query", "1e3", "--index", "12", "--format", "json", cwd=tmp_path)
    rows = [json.loads(line) for line in p.out.splitlines()]
    assert p.returncode == 0 and rows[0]["query"].endswith("/1e3") and "/2024.10/" in rows[0]["path"]


# ---- 3: an option that needs a value gets one ---------------------------------------------------


@pytest.mark.parametrize("option", ["--html", "--index", "--k", "--relative-to", "--format"])
def test_3_a_flag_without_its_value_is_refused(index, examples, option):
    refused(vs("query", query_image(examples), option), f"{option} needs a value")


def test_3_dedup_out_without_a_value(index):
    refused(vs("dedup", "--index", index, "--out"), "--out needs a value")


# ---- 4: -h is help, on every command --------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["query", "-h"], ["query", "x.jpg", "-h"], ["query", "x.jpg", "--format", "json", "-h"]]
)
def test_4_h_means_help(args):
    p = vs(*args)
    assert p.returncode == 0 and p.out.startswith("usage: vecsearch query") and p.err == ""


# ---- 5: numbers are checked in the tool's words ---------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--k", "abc"], "--k must be a whole number of at least 1, not 'abc'"),
        (["--k", "2.7"], "--k must be a whole number of at least 1, not '2.7'"),
        (["--k", "0"], "--k must be a whole number of at least 1"),
        (["--min-similarity", "abc"], "--min-similarity must be a number from 0 to 100, not 'abc'"),
        (["--min-similarity", "150"], "--min-similarity must be a number from 0 to 100"),
    ],
)
def test_5_bad_numbers(index, examples, args, words):
    refused(vs("query", query_image(examples), "--index", index, *args), words)


def test_5_bad_workers_and_sizes(tmp_path, photo_dir):
    refused(
        vs("build", photo_dir, "--index", tmp_path / "i", "--workers", "abc"),
        "--workers must be a whole number",
    )
    refused(
        vs("build", photo_dir, "--index", tmp_path / "i", "--memory-budget", "lots"), "a size like 512M or 4G"
    )
    assert not (tmp_path / "i").exists()


# ---- 6: an index path that is a file --------------------------------------------------------------


def test_6_index_that_is_a_file(tmp_path, photo_dir, examples):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    refused(vs("build", photo_dir, "--index", f), "is a file, not an index directory")
    refused(vs("query", query_image(examples), "--index", f), "is a file, not an index directory")
    refused(vs("info", "--index", f), "is a file, not an index directory")
    assert f.read_text() == "mine"


# ---- 7 and 8: every query answered, none vanishes --------------------------------------------------


def test_7_one_unreadable_query_does_not_cancel_the_others(index, tmp_path, examples):
    qdir = tmp_path / "queries"
    qdir.mkdir()
    for name in ("coffee", "chelsea"):
        shutil.copy(query_image(examples, name), qdir)
    (qdir / "empty.jpg").write_bytes(b"")
    p = vs("query", qdir, "--index", index, "--format", "json", "--k", 1)
    assert p.returncode == 3, p.err  # some queries failed
    answered = {Path(json.loads(line)["query"]).name for line in p.out.splitlines()}
    assert answered == {"coffee.jpg", "chelsea.jpg"}
    assert "empty.jpg" in p.err and "empty file" in p.err


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_8_queries_without_hits_still_appear(index, examples, fmt):
    queries = [query_image(examples, "rocket"), query_image(examples, "coffee")]
    p = vs("query", *queries, "--index", index, "--min-similarity", 70, "--format", fmt)
    assert p.returncode == 0, p.err
    assert "rocket.jpg" in p.out and "coffee.jpg" in p.out
    if fmt == "json":
        rows = [json.loads(line) for line in p.out.splitlines()]
        assert [r["path"] for r in rows if r["query"].endswith("rocket.jpg")] == [None]
    none = vs("query", queries[0], "--index", index, "--min-similarity", 70, "--format", fmt)
    assert none.returncode == 1 and "rocket.jpg" in none.out  # no hits: exit 1, the query still shown


# ---- 9: where output goes is checked first ---------------------------------------------------------


def test_9_output_folders_are_checked_before_the_work(index, examples, tmp_path):
    refused(
        vs("query", query_image(examples), "--index", index, "--html", tmp_path / "out" / "r.html"),
        "r.html",
        "does not exist",
    )
    refused(
        vs("dedup", "--index", index, "--out", tmp_path / "nodir" / "groups.csv"),
        "groups.csv",
        "does not exist",
    )
    assert not list(tmp_path.glob("**/.*.tmp"))


# ---- 10: no leftovers -----------------------------------------------------------------------------


def test_10_missing_index_leaves_nothing_behind(tmp_path, photo_dir):
    for args in (["add", photo_dir], ["remove", photo_dir]):
        refused(vs(*args, "--index", tmp_path / "missing"), "no index here")
        assert not (tmp_path / "missing").exists()
    (tmp_path / "emptydir").mkdir()
    refused(vs("build", tmp_path / "emptydir", "--index", tmp_path / "idx" / "empty"), "no images found")
    assert not (tmp_path / "idx").exists()


def test_10_a_query_during_the_first_build_says_so(tmp_path, examples):
    (tmp_path / "idx" / ".build").mkdir(parents=True)  # what a first build has before it commits
    refused(vs("query", query_image(examples), "--index", tmp_path / "idx"), "no version committed yet")


# ---- 11: check ------------------------------------------------------------------------------------


def test_11_check_on_a_missing_index_is_a_usage_error(tmp_path, index):
    refused(vs("check", "--index", tmp_path / "nowhere"), "no index here")
    ok = vs("check", "--index", index)
    assert ok.returncode == 0 and ok.out.strip().endswith("ok")


# ---- 12: what add says -----------------------------------------------------------------------------


def test_12_add_reports_this_add_only(tmp_path, examples, enc_file):
    src = tmp_path / "src"
    src.mkdir()
    for p in examples[:3]:
        shutil.copy(p, src)
    (src / "empty.jpg").write_bytes(b"")
    assert (
        vs("build", src, "--index", tmp_path / "idx", "--encoder", enc_file, "--workers", 0).returncode == 0
    )
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(examples[4], more)
    p = vs("add", more, "--index", tmp_path / "idx", "--workers", 0)
    assert p.returncode == 0 and "added 1 image," in p.err and "skipped" not in p.err.splitlines()[-1], p.err
    touched = src / Path(examples[0]).name
    os.utime(touched, (time.time() + 5, time.time() + 5))
    p = vs("add", src, "--index", tmp_path / "idx", "--workers", 0)
    assert "added 0 images, updated 1" in p.err.splitlines()[-1], p.err
    version = json.loads((tmp_path / "idx" / "manifest.json").read_text())["version"]
    p = vs("add", more, "--index", tmp_path / "idx", "--workers", 0)
    assert p.returncode == 0 and "nothing new" in p.err and "images/s" not in p.err, p.err
    assert (
        json.loads((tmp_path / "idx" / "manifest.json").read_text())["version"] == version
    )  # no new version


# ---- 13: remove, embed and info say what they did ---------------------------------------------------


def test_13_remove_of_a_path_never_indexed(index, tmp_path):
    before = snapshot(index)
    p = vs("remove", tmp_path / "never", "--index", index)
    assert p.returncode == 1 and p.out == "" and "no indexed image is at or under" in p.err
    assert snapshot(index) == before


def test_13_embed_of_an_empty_folder(tmp_path, enc_file):
    (tmp_path / "emptydir").mkdir()
    refused(
        vs("embed", tmp_path / "emptydir", "--encoder", enc_file, "--out", tmp_path / "v.parquet"),
        "no images found",
    )
    assert not (tmp_path / "v.parquet").exists()


def test_13_info_formats(index):
    table = vs("info", "--index", index)
    assert table.returncode == 0 and "{" not in table.out and "exact search" in table.out
    csv_out = vs("info", "--index", index, "--format", "csv")
    assert csv_out.out.splitlines()[0] == "key,value" and any(
        line.startswith("images,10") for line in csv_out.out.splitlines()
    )


# ---- 14: an encoder trained on far fewer images is retrained ------------------------------------------


@pytest.mark.slow
def test_14_rebuild_retrains_an_encoder_trained_on_one_image(tmp_path, examples):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(examples[0], one)
    assert vs("build", one, "--index", tmp_path / "idx", "--workers", 0, "--quiet").returncode == 0
    first = json.loads((tmp_path / "idx" / "manifest.json").read_text())["encoder"]["fingerprint"]
    kept = vs("build", *examples, "--index", tmp_path / "idx", "--workers", 0, "--keep-encoder")
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["encoder"]["fingerprint"] == first, (
        kept.err
    )
    p = vs("build", *examples, "--index", tmp_path / "idx", "--workers", 0)
    assert p.returncode == 0 and "retraining the encoder" in p.err and "trained on 1 image" in p.err, p.err
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["encoder"]["fingerprint"] != first


# ---- 15: help reads like a well-made command line's -------------------------------------------------


@pytest.mark.parametrize(
    "command", ["build", "add", "remove", "query", "dedup", "info", "check", "embed", "train"]
)
def test_15_help_pages(command):
    p = vs(command, "--help")
    assert p.returncode == 0 and p.err == ""
    assert p.out.startswith(f"usage: vecsearch {command}") and "examples:" in p.out
    assert (
        "INFO:" not in p.out and "Optional[" not in p.out and "Type:" not in p.out and "--min_" not in p.out
    )


def test_15_help_loads_no_image_or_index_library():
    code = (
        "import sys; from vecsearch.cli import main; main(['query', '--help']); "
        "print(sorted(m for m in ('cv2', 'faiss', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.strip().splitlines()[-1] == "[]", p.stdout


# ---- 16: progress and stage logs --------------------------------------------------------------------


def test_16_a_build_without_a_terminal_logs_its_stages(tmp_path, photo_dir, enc_file):
    p = vs("build", photo_dir, "--index", tmp_path / "idx", "--encoder", enc_file, "--workers", 0)
    stages = [line.split(":")[0] for line in p.err.splitlines()]
    assert (
        p.returncode == 0
        and stages[:3] == ["scan", "encode", "index"]
        and "calibrate" in stages
        and "commit" in stages
    )
    assert "scan: 10 files" in p.err and "file [" not in p.err  # a log line, not a bar
    quiet = vs(
        "build", photo_dir, "--index", tmp_path / "idx", "--encoder", enc_file, "--workers", 0, "--quiet"
    )
    assert quiet.err == ""


# ---- 17: workers end with their parent ---------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


@pytest.mark.slow
def test_17_killing_a_build_ends_its_workers(tmp_path, examples, enc_file):
    import psutil

    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        for p in examples:
            shutil.copy(p, src / f"{i}-{Path(p).name}")
    exe = script()
    args = [
        "build",
        src,
        "--index",
        tmp_path / "idx",
        "--encoder",
        enc_file,
        "--workers",
        2,
        "--batch-size",
        4,
    ]
    build = subprocess.Popen([exe, *map(str, args), "--quiet"])
    # The resource tracker and the forkserver are its children; pool workers fork from the forkserver.
    deadline, helpers = time.time() + 60, []
    while time.time() < deadline and (
        not list((tmp_path / "idx").glob(".build/chunk-*")) or len(helpers) < 4
    ):
        helpers = _descendants(build.pid)
        time.sleep(0.05)
    assert len(helpers) >= 4, helpers  # 2 workers at least
    build.send_signal(signal.SIGKILL)
    build.wait()
    _, alive = psutil.wait_procs([psutil.Process(p) for p in helpers if psutil.pid_exists(p)], timeout=15)
    assert alive == [], [p.cmdline() for p in alive]


# ---- 18: inputs that could hang a build ---------------------------------------------------------------


def test_18_fifos_and_devices_are_skipped_not_read(tmp_path, examples, enc_file):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(examples[0], src)
    os.mkfifo(src / "x.jpg")
    os.symlink("/dev/zero", src / "zero.jpg")
    p = vs("build", src, "--index", tmp_path / "idx", "--encoder", enc_file, "--workers", 0, timeout=60)
    assert p.returncode == 0, p.err
    skipped = vs("info", "--index", tmp_path / "idx", "--skipped", "--format", "json")
    reasons = {
        Path(json.loads(line)["path"]).name: json.loads(line)["reason"] for line in skipped.out.splitlines()
    }
    assert "FIFO" in reasons["x.jpg"] and "device" in reasons["zero.jpg"]


# ---- 19: file names that are not UTF-8 --------------------------------------------------------------


def test_19_names_that_are_not_utf8_round_trip(tmp_path, examples, enc_file):
    src = tmp_path / "src"
    src.mkdir()
    for p in examples[:3]:
        shutil.copy(p, src)
    raw = os.fsencode(src) + b"/caf\xe9.jpg"  # Latin-1 "café": not valid UTF-8
    with open(raw, "wb") as f:
        f.write(Path(query_image(examples, "chelsea")).read_bytes())
    name = os.fsdecode(raw)
    idx = tmp_path / "idx"
    assert vs("build", src, "--index", idx, "--encoder", enc_file, "--workers", 0, "--quiet").returncode == 0
    p = vs("query", name, "--index", idx, "--format", "json", "--k", 1, "--html", tmp_path / "r.html")
    row = json.loads(p.stdout.splitlines()[0])  # valid JSON, the odd byte escaped
    assert p.returncode == 0 and os.fsencode(row["path"]) == raw and os.fsencode(row["query"]) == raw
    csv_out = vs("query", name, "--index", idx, "--format", "csv", "--k", 1)
    assert raw in csv_out.stdout  # the name's own bytes
    page = (tmp_path / "r.html").read_text()
    assert "caf\\xe9.jpg" in page and "caf%E9.jpg" in page  # shown as text, linked exactly
    os.utime(raw, (time.time() + 5, time.time() + 5))
    assert "updated 1" in vs("add", src, "--index", idx, "--workers", 0).err
    p = vs("remove", name, "--index", idx)
    assert p.returncode == 0 and "removed 1 image" in p.err
    assert vs("check", "--index", idx).returncode == 0


# ---- 20: a damaged file is one clear line on every command ------------------------------------------


def test_20_garbled_metadata(index, examples):
    manifest = json.loads((index / "manifest.json").read_text())
    meta = index / manifest["files"]["metadata"]["name"]
    data = bytearray(meta.read_bytes())
    data[8:200] = bytes(192)  # page headers gone, same size
    meta.write_bytes(bytes(data))
    refused(vs("query", query_image(examples), "--index", index), str(meta.name))
    refused(vs("dedup", "--index", index), str(meta.name))
    damaged = vs("check", "--index", index)
    assert damaged.returncode == 1 and meta.name in damaged.out

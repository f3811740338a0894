"""``vecsearch serve`` as its users meet it: a real server process on a free loopback port, driven
with a real HTTP client; answers compared with the command line's on the same index."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import mild_edit, refused, script, vs

import vecsearch
from vecsearch.verify import MIN_INLIERS

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

HOSTILE = "<img src=x onerror=alert(1)>.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``vecsearch serve`` in a subprocess, its log in a file; ready once /healthz answers."""

    def __init__(self, index: Path, *options, env: dict | None = None, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [script(), "serve", "--index", str(index), "--port", str(self.port), *map(str, options)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        deadline = time.time() + 60
        while True:
            assert self.proc.poll() is None, log.read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, log.read_text()
            time.sleep(0.1)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it: the exit status."""
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture(scope="module")
def site(tmp_path_factory, examples, encoder):
    """An index of the example photos (coffee under a hostile name, rocket left out) and a smaller
    copy of chelsea; the queries: an edited copy of chelsea and rocket."""
    photos = tmp_path_factory.mktemp("site-photos")
    for p in examples:
        name = Path(p).name
        if name != "rocket.jpg":
            shutil.copy(p, photos / (HOSTILE if name == "coffee.jpg" else name))
    chelsea = next(p for p in examples if p.endswith("chelsea.jpg"))
    cv2.imwrite(str(photos / "chelsea-copy.jpg"), mild_edit(cv2.imread(chelsea), 3))
    queries = tmp_path_factory.mktemp("site-queries")
    cv2.imwrite(str(queries / "edited.jpg"), mild_edit(cv2.imread(chelsea), 1))
    shutil.copy(next(p for p in examples if p.endswith("rocket.jpg")), queries / "rocket.jpg")
    root = tmp_path_factory.mktemp("site-index") / "photos"
    enc = encoder.save(root.parent / "encoder.npz")
    index = vecsearch.build([photos], root, encoder=enc, workers=0, quiet=True)
    return {"root": root, "index": index, "photos": photos, "edited": queries / "edited.jpg",
            "rocket": queries / "rocket.jpg", "encoder": enc}  # fmt: skip


@pytest.fixture(scope="module")
def server(site, tmp_path_factory):
    s = Server(site["root"], "--max-upload", "1M", log=tmp_path_factory.mktemp("log") / "serve.log")
    yield s
    assert s.stop() == 0, s.log.read_text()
    assert "Traceback" not in s.log.read_text()


def cli_hits(site, *queries, k=5):
    p = vs("query", *queries, "--index", site["root"], "--k", k, "--format", "json")
    assert p.returncode == 0, p.err
    rows = [json.loads(line) for line in p.out.splitlines()]
    return [[r for r in rows if r["query"] == str(q)] for q in queries]


def test_search_by_upload_answers_as_the_command_line_does(site, server):
    edited, rocket = site["edited"], site["rocket"]
    r = server.client.post(
        "/api/search",
        params={"k": 5},
        files=[("image", (p.name, p.read_bytes(), "image/jpeg")) for p in (edited, rocket)],
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["query"] for x in results] == ["edited.jpg", "rocket.jpg"]
    top = results[0]["hits"][0]
    assert Path(top["path"]).name in ("chelsea.jpg", "chelsea-copy.jpg") and top["similarity"] >= 70
    assert results[1]["hits"][0]["similarity"] < 30  # rocket is not in the index
    for served, cli in zip(results, cli_hits(site, edited, rocket)):
        assert [(h["id"], h["similarity"]) for h in served["hits"]] == [
            (h["id"], h["similarity"]) for h in cli
        ]
        assert set(cli[0]) - {"query"} <= set(served["hits"][0])  # the CLI's fields, and file facts
        assert {"width", "height", "bytes"} <= set(served["hits"][0])
    raw = server.client.post(
        "/api/search", params={"k": 5}, content=edited.read_bytes(), headers={"content-type": "image/jpeg"}
    )
    assert raw.status_code == 200 and raw.json()["results"][0]["hits"] == results[0]["hits"]


def test_min_similarity_and_k_limit_the_hits(site, server):
    files = {"image": ("edited.jpg", site["edited"].read_bytes(), "image/jpeg")}
    every = server.client.post("/api/search", params={"k": 12}, files=files).json()["results"][0]["hits"]
    high = server.client.post("/api/search", params={"k": 12, "min_similarity": 50}, files=files)
    kept = high.json()["results"][0]["hits"]
    assert len(every) == len(site["index"]) and 1 <= len(kept) < len(every)
    assert kept == [h for h in every if h["similarity"] >= 50]


def test_search_by_vector(site, server):
    vectors = vecsearch.embed([site["edited"]], site["root"])["vector"].to_pylist()
    r = server.client.post("/api/search/vector", json={"vectors": vectors, "k": 3})
    assert r.status_code == 200, r.text
    hits = r.json()["results"][0]["hits"]
    assert len(hits) == 3 and Path(hits[0]["path"]).name in ("chelsea.jpg", "chelsea-copy.jpg")


def test_info_and_indexed_images_by_id(site, server):
    info = server.client.get("/api/info").json()
    assert info["images"] == len(site["index"]) and info["version"] == site["index"].version.number
    meta = site["index"].metadata()
    for image_id, path in zip(meta["id"].to_pylist(), meta["path"].to_pylist()):
        r = server.client.get(f"/api/images/{image_id}")
        assert r.status_code == 200 and r.content == Path(path).read_bytes()
        assert r.headers["content-type"] == "image/jpeg"
    thumb = server.client.get(f"/api/images/{meta['id'][0].as_py()}/thumbnail", params={"size": 64})
    pixels = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.headers["content-type"] == "image/jpeg" and max(pixels.shape[:2]) == 64


@pytest.mark.parametrize("verify", [False, True])
def test_dedup_groups_match_the_command_line(site, server, verify):
    r = server.client.get("/api/dedup", params={"min_similarity": 80, "verify": verify})
    assert r.status_code == 200, r.text
    groups = r.json()["groups"]
    keepers = {Path(g[0]["path"]).name: {Path(m["path"]).name for m in g[1:]} for g in groups}
    assert keepers.get("chelsea.jpg") == {"chelsea-copy.jpg"} and groups[0][0]["keep"]
    copy = next(m for g in groups for m in g if m["path"].endswith("chelsea-copy.jpg"))
    assert (copy["inliers"] is not None) == verify  # checked against its keeper's keypoints
    p = vs("dedup", "--index", site["root"], "--min-similarity", 80, "--format", "json", "--quiet",
           *(["--verify"] if verify else []))  # fmt: skip
    rows = [json.loads(line) for line in p.out.splitlines()]
    fields = ("id", "keep", "similarity", *(["inliers"] if verify else []))
    assert [tuple(m[f] for f in fields) for g in groups for m in g] == [
        tuple(m[f] for f in fields) for m in rows
    ]


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_every_bad_input_gets_a_4xx_naming_the_problem(site, server):
    import psutil

    good = site["edited"].read_bytes()
    jpeg = {"content-type": "image/jpeg"}
    post = server.client.post
    cases = [
        (post("/api/search", content=b"plain text" * 50, headers=jpeg), 422, "not a recognised"),
        (post("/api/search", content=b"", headers=jpeg), 422, "empty"),
        (post("/api/search", files={"image": ("cut.jpg", good[: len(good) // 3])}), 422, "cut.jpg"),
        (post("/api/search", files={"image": ("bomb.png", png_claiming(30000, 30000))}), 422, "too large"),
        (post("/api/search", content=os.urandom(1_500_000), headers=jpeg), 413, "limit"),
        (post("/api/search", content=iter([b"\xff" * 65536] * 40), headers=jpeg), 413, "limit"),  # chunked
        (post("/api/search", content=good, headers={"content-type": "text/plain"}), 415, "multipart"),
        (post("/api/search", data={"note": "no file"}, files={}), 415, "multipart"),
        (post("/api/search", files={"x": ("", b"")}, data={"a": "b"}), 422, ""),
        (post("/api/search", params={"k": 0}, content=good, headers=jpeg), 422, "k must be"),
        (post("/api/search", params={"k": 5000}, content=good, headers=jpeg), 422, "k must be"),
        (post("/api/search", params={"k": "ten"}, content=good, headers=jpeg), 422, "k"),
        (post("/api/search", params={"min_similarity": 101}, content=good, headers=jpeg), 422, "min_sim"),
        (post("/api/search/vector", content=b"{not json"), 400, "not valid JSON"),
        (post("/api/search/vector", json={"vectors": [[0.5, 0.5]]}), 422, "length"),
        (post("/api/search/vector", json={"vectors": [[1.0] * site["index"].dim], "k": -1}), 422, "k must"),
        (post("/api/search/vector", json=[1, 2]), 422, "vectors"),
        (server.client.get("/api/images/987654"), 404, "no image 987654"),
        (server.client.get("/api/images/-1"), 404, "no image"),
        (server.client.get("/api/images/abc"), 422, "image_id"),
        (server.client.get("/api/images/0/thumbnail", params={"size": 5}), 422, "size"),
        (server.client.get("/api/dedup", params={"min_similarity": 0}), 422, "min_similarity"),
        (server.client.get("/static/../../etc/passwd"), 404, ""),
        (server.client.get("/static/"), 404, ""),
    ]  # fmt: skip
    for r, status, words in cases:
        assert r.status_code == status, (r.request.url, r.status_code, r.text)
        assert words in r.json()["error"], (r.request.url, r.text)
    rss = psutil.Process(server.proc.pid).memory_info().rss
    for _ in range(20):  # big uploads and bombs do not make the server grow
        assert post("/api/search", content=os.urandom(1_200_000), headers=jpeg).status_code == 413
        assert post("/api/search", files={"i": ("b.png", png_claiming(20000, 20000))}).status_code == 422
    assert psutil.Process(server.proc.pid).memory_info().rss < rss + 50 * 2**20
    assert server.client.get("/healthz").json()["status"] == "ok"


def test_the_page_and_its_headers(server):
    page = server.client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    for name in ("app.js", "style.css"):
        asset = server.client.get(f"/static/{name}")
        assert asset.status_code == 200 and "http://" not in asset.text and "https://" not in asset.text
    assert "innerHTML" not in server.client.get("/static/app.js").text  # names go in as text
    assert server.client.get("/api/openapi.json").json()["paths"].keys() >= {"/api/search", "/api/info"}


def test_off_loopback_a_token_is_required(site, tmp_path):
    refused(vs("serve", "--index", site["root"], "--host", "0.0.0.0"), "--host 0.0.0.0", "token")
    (tmp_path / "empty").write_text("\n")
    refused(vs("serve", "--index", site["root"], "--token-file", tmp_path / "empty"), "empty")
    refused(vs("serve", "--index", site["root"], "--token-file", tmp_path / "none"), "cannot read")
    (tmp_path / "secret").write_text("s3cret-token\n")
    for how in (
        {"options": ["--token-file", tmp_path / "secret"]},
        {"env": {"VECSEARCH_TOKEN": "s3cret-token"}},
    ):
        s = Server(site["root"], "--host", "0.0.0.0", *how.get("options", []), env=how.get("env"),
                   log=tmp_path / "log")  # fmt: skip
        try:
            assert s.client.get("/api/info").status_code == 401
            assert "token" in s.client.get("/api/info").json()["error"]
            wrong = s.client.get("/api/info", headers={"Authorization": "Bearer s3cret"})
            assert wrong.status_code == 401
            right = s.client.get("/api/info", headers={"Authorization": "Bearer s3cret-token"})
            assert right.status_code == 200 and right.json()["images"] == len(site["index"])
            image = s.client.get("/api/images/0")
            assert image.status_code == 401
            assert s.client.get("/healthz").status_code == 200 and s.client.get("/").status_code == 200
        finally:
            assert s.stop() == 0


def test_bad_serve_arguments_are_refused_before_listening(site, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused(vs("serve", "--index", site["root"], "--port", port), f"--port {port}", "cannot listen")
    refused(vs("serve", "--index", tmp_path / "nothing"), "no index here")
    refused(vs("serve", "--index", site["root"], "--port", 70000), "--port")
    refused(vs("serve", "--index", site["root"], "--max-upload", "lots"), "--max-upload")
    refused(vs("serve", "--index", site["root"], "--host", "no-such-host.invalid"), "no such address")


@pytest.fixture
def own_index(tmp_path, site):
    """A copy of the site's index that a test may change."""
    root = tmp_path / "own"
    shutil.copytree(site["root"], root)
    return root


def _version(s: Server) -> int:
    return s.client.get("/healthz").json()["version"]


def _wait(condition, seconds=30):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline
        time.sleep(0.1)


@pytest.mark.slow
def test_add_committed_while_queries_run(site, own_index, tmp_path, examples):
    s = Server(own_index, "--quiet", log=tmp_path / "log")
    files = {"image": ("edited.jpg", site["edited"].read_bytes(), "image/jpeg")}
    seen, failures, stop = [], [], threading.Event()

    def ask():
        with httpx.Client(base_url=s.url, timeout=60) as c:
            while not stop.is_set():
                try:
                    r = c.post("/api/search", params={"k": 3}, files=files)
                    if r.status_code != 200:
                        failures.append(r.text)
                    else:
                        seen.append(r.json()["version"])
                except httpx.HTTPError as e:
                    failures.append(repr(e))

    askers = [threading.Thread(target=ask) for _ in range(3)]
    for t in askers:
        t.start()
    try:
        new = tmp_path / "new"
        new.mkdir()
        shutil.copy(site["rocket"], new / "rocket.jpg")
        before = _version(s)
        p = vs("add", new, "--index", own_index, "--workers", 0, "--quiet")
        assert p.returncode == 0, p.err
        _wait(lambda: _version(s) == before + 1)
        time.sleep(1)
    finally:
        stop.set()
        for t in askers:
            t.join()
    assert not failures, failures[:3]
    assert len(seen) > 10 and before in seen and before + 1 in seen
    hits = s.client.post(
        "/api/search", files={"image": ("rocket.jpg", site["rocket"].read_bytes(), "image/jpeg")}
    ).json()["results"][0]["hits"]
    assert Path(hits[0]["path"]).name == "rocket.jpg" and hits[0]["similarity"] >= 90
    assert s.client.get("/api/info").json()["images"] == len(site["index"]) + 1
    assert s.stop() == 0


def test_a_damaged_new_version_is_not_served(site, own_index, tmp_path):
    s = Server(own_index, log=tmp_path / "log")
    manifest = own_index / "manifest.json"
    good = manifest.read_text()
    damaged = json.loads(good)
    damaged["version"] += 1
    damaged["files"]["index"]["name"] = "index.999999.faiss"
    (own_index / "index.999999.faiss").write_bytes(b"not a faiss index")
    (own_index / "manifest.tmp").write_text(json.dumps(damaged))
    os.replace(own_index / "manifest.tmp", manifest)
    _wait(lambda: s.client.get("/healthz").json()["status"] == "degraded")
    health = s.client.get("/healthz").json()
    assert health["version"] == damaged["version"] - 1 and health["problem"]
    r = s.client.post(
        "/api/search", content=site["edited"].read_bytes(), headers={"content-type": "image/jpeg"}
    )
    assert r.status_code == 200 and r.json()["version"] == damaged["version"] - 1
    (own_index / "manifest.tmp").write_text(good)
    os.replace(own_index / "manifest.tmp", manifest)
    _wait(lambda: s.client.get("/healthz").json()["status"] == "ok")
    assert s.stop() == 0
    assert "keeping version" in (tmp_path / "log").read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser_page(server):
    if not CHROMIUM:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.alerts, page.errors = [], []
        page.on("dialog", lambda d: (page.alerts.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(server.url)
        yield page
        browser.close()


def _shown(page, query=0) -> list[tuple[str, float, str]]:
    """(percentage text, value, path) of the hits the page shows for its query-th newest search."""
    section = page.locator("#results .query").nth(query)
    texts = section.locator(".percent").all_inner_texts()
    paths = section.locator(".path").all_inner_texts()
    return [(t, float(t.rstrip("%")), p) for t, p in zip(texts, paths)]


@pytest.mark.slow
def test_the_page_in_a_browser(site, browser_page):
    page = browser_page
    page.wait_for_function("() => document.getElementById('about').textContent.includes('images')")
    page.set_input_files("#pick", str(site["edited"]))
    page.wait_for_selector("#results .hit")
    hits = _shown(page)
    assert len(hits) == len(site["index"])  # k 20 asks for more than there are
    assert all(re.fullmatch(r"\d+(\.\d)?%", t) for t, _, _ in hits)
    assert [v for _, v, _ in hits] == sorted((v for _, v, _ in hits), reverse=True)
    assert Path(hits[0][2]).name in ("chelsea.jpg", "chelsea-copy.jpg") and hits[0][1] >= 70
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results .hit img')].every(i => i.complete && i.naturalWidth > "
        "0)"
    )

    page.focus("#min-similarity")  # the slider, from the keyboard: PageUp moves it by 10
    for _ in range(5):
        page.keyboard.press("PageUp")
    assert page.input_value("#min-similarity") == "50"
    fewer = _shown(page)
    assert 1 <= len(fewer) < len(hits) and all(v >= 50 for _, v, _ in fewer)
    page.fill("#k", "1")
    assert len(_shown(page)) == 1

    page.locator("#results .hit button").first.focus()
    page.keyboard.press("Enter")  # a hit opens large, beside the query
    page.wait_for_selector("#viewer[open]")
    page.wait_for_function("() => document.getElementById('viewer-hit').naturalWidth > 0")
    assert page.inner_text("#viewer-hit-name") == hits[0][2]
    page.click("#viewer-copies")  # ... and is searched for in turn
    page.wait_for_function("() => document.querySelectorAll('#results .query').length === 2")
    page.wait_for_selector("#results .query:first-child .hit")
    assert page.inner_text("#results .query:first-child h2") == hits[0][2]
    assert _shown(page)[0][2] == hits[0][2] and _shown(page)[0][1] >= 90

    page.fill("#k", "20")
    page.eval_on_selector("#min-similarity", "e => { e.value = 0; e.dispatchEvent(new Event('input')); }")
    page.set_input_files("#pick", str(site["photos"] / HOSTILE))  # a hostile name stays text
    page.wait_for_function("() => document.querySelectorAll('#results .query').length === 3")
    page.wait_for_selector("#results .query:first-child .hit")
    assert page.inner_text("#results .query:first-child h2") == HOSTILE
    assert Path(_shown(page)[0][2]).name == HOSTILE
    assert page.locator("img[src='x']").count() == 0 and page.alerts == []

    page.check("#verify")  # what verification found is shown beside each hit
    page.set_input_files("#pick", str(site["edited"]))
    page.wait_for_function("() => document.querySelectorAll('#results .query').length === 4")
    page.wait_for_selector("#results .query:first-child .hit")
    first = page.locator("#results .query").first
    facts = first.locator(".hit .facts").all_inner_texts()
    verified = re.search(r"(\d+) inliers, agreement (0\.\d+|1\.000), residual (\d+\.\d\d)", facts[0])
    assert Path(_shown(page)[0][2]).name in ("chelsea.jpg", "chelsea-copy.jpg"), facts
    assert verified and int(verified[1]) >= MIN_INLIERS and float(verified[2]) > 0.9, facts
    assert float(verified[3]) < 1.0, facts  # a copy strays from the alignment less than another shot
    assert all(re.search(r"\d+ inliers", f) for f in facts[1:])  # failed checks say how few
    first.locator(".hit button").first.click()
    page.wait_for_selector("#viewer[open]")
    assert verified[0] in page.inner_text("#viewer-facts")
    page.keyboard.press("Escape")
    page.uncheck("#verify")

    page.click("#show-dedup")
    page.fill("#dedup-min", "80")
    page.click("#dedup-form button")
    page.wait_for_selector("#groups .keeper")
    keeper = page.locator("#groups .group").first.locator(".keeper .path").inner_text()
    assert Path(keeper).name == "chelsea.jpg"
    assert "inliers" not in page.inner_text("#groups")
    page.check("#dedup-verify")
    page.click("#dedup-form button")
    page.locator("#groups .facts", has_text="inliers").first.wait_for()
    member = page.locator("#groups .group").first.locator(".hit:not(.keeper) .facts").inner_text()
    assert re.search(r"\d+ inliers", member), member  # the copy, checked against its keeper

    page.set_viewport_size({"width": 360, "height": 740})  # a phone: nothing wider than the screen
    page.click("#show-search")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.errors == []


def test_the_page_asks_for_the_token(site, tmp_path):
    if not CHROMIUM:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    s = Server(
        site["root"], "--host", "0.0.0.0", env={"VECSEARCH_TOKEN": "s3cret-token"}, log=tmp_path / "log"
    )
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(s.url)
            page.wait_for_selector("#token-form:not([hidden])")
            page.fill("#token", "s3cret-token")
            page.keyboard.press("Enter")
            page.wait_for_function("() => document.getElementById('about').textContent.includes('images')")
            page.set_input_files("#pick", str(site["edited"]))
            page.wait_for_selector("#results .hit")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#results .hit img')].every(i => i.naturalWidth > 0)"
            )
            browser.close()
    finally:
        assert s.stop() == 0


def test_the_listening_socket_names_tcp_so_responses_are_not_held_back():
    """asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; without it every
    response after the first on a kept-alive connection waited 40 ms for a delayed ACK."""
    import socket

    from vecsearch.commands.serving import _listen

    sock = _listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()

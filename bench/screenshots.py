"""The screenshots in docs/ (a results gallery, a near-duplicate page and the page of
``vecsearch serve``), from the shipped photos.

    python -m bench.screenshots

Builds an index of the example photos plus edited copies of three of them, writes the two HTML
pages and renders them with headless Chromium, then serves the index and drops a query on the
served page (Playwright driving the same Chromium). Only the public-domain/CC0 example photos
appear.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

import vecsearch
from vecsearch import report
from vecsearch.dedup import find_groups
from vecsearch.edits import crop, jpeg, random_edit, rescale
from vecsearch.encoder import example_images

DOCS = Path(__file__).resolve().parent.parent / "docs"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def shoot(page: Path, out: Path, size: str, profile: Path) -> None:
    subprocess.run(
        [
            "chromium",
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={size}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def shoot_served(index: Path, query: Path, out: Path) -> None:
    """The served page after a search for ``query``, all thumbnails loaded."""
    import socket
    import time

    import httpx
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        ["vecsearch", "serve", "--index", str(index), "--port", str(port), "--quiet"],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1320, "height": 900})
            page.goto(url)
            page.set_input_files("#pick", str(query))
            page.wait_for_selector("#results .hit")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#results .hit img')].every(i => i.naturalWidth > 0)"
            )
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "photos"
        src.mkdir()
        rng = np.random.default_rng(5)
        for p in example_images():
            shutil.copy(p, src)
        for p in example_images()[3:6]:
            img = cv2.imread(p)
            cv2.imwrite(str(src / f"{Path(p).stem}-small.jpg"), jpeg(rescale(crop(img, 0.9, rng), 0.6), 70))
            cv2.imwrite(str(src / f"{Path(p).stem}-edited.jpg"), random_edit(img, rng, strength=0.4))
        index = vecsearch.build([src], tmp / "index", workers=0, quiet=True)
        shown = lambda p: str(Path(p).relative_to(src)) if p.startswith(str(src)) else Path(p).name  # noqa: E731
        query = tmp / "query.jpg"
        cv2.imwrite(str(query), random_edit(cv2.imread(example_images()[3]), rng, strength=0.5))
        queries = [str(query), str(src / "coffee-small.jpg")]
        gallery = report.write(
            tmp / "gallery.html",
            report.results_page(list(zip(queries, index.search_many(queries, k=5))), shown),
        )
        groups = find_groups(index, 80)
        dedup = report.write(
            tmp / "dedup.html", report.groups_page([[m.as_dict() for m in g] for g in groups], shown)
        )
        shoot(gallery, DOCS / "gallery.png", "1320,800", tmp / "p1")
        shoot(dedup, DOCS / "dedup.png", "1320,800", tmp / "p2")
        shoot_served(index.path, query, DOCS / "serve.png")
    print(f"wrote {DOCS / 'gallery.png'}, {DOCS / 'dedup.png'} and {DOCS / 'serve.png'}")


if __name__ == "__main__":
    main()

"""The screenshots in docs/ (a results gallery and a near-duplicate page), from the shipped photos.

    python -m bench.screenshots

Builds an index of the example photos plus edited copies of three of them, writes the two HTML
pages and renders them with headless Chromium. Only the public-domain/CC0 example photos appear.
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
    print(f"wrote {DOCS / 'gallery.png'} and {DOCS / 'dedup.png'}")


if __name__ == "__main__":
    main()

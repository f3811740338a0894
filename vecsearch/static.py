"""The files of the web page ``vecsearch serve`` shows: plain HTML, CSS and JavaScript, shipped in
``vecsearch/web`` and served as they are (no build step, nothing fetched from elsewhere)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

FOLDER = Path(__file__).parent / "web"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@cache
def read(name: str) -> bytes:
    """A file of the page, by name (only those of FILES)."""
    if name not in FILES:
        raise KeyError(name)
    return (FOLDER / name).read_bytes()

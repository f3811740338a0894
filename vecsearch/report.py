"""Self-contained HTML pages of results: query and hits (or duplicate groups) as thumbnail grids.

Thumbnails are small JPEG data URIs, so a page still works when moved or mailed. Every text that
comes from a file name goes through ``text``: a name like ``<script>.jpg`` is shown, never run, and
bytes of a name that are not UTF-8 are shown as ``\\xNN`` (the link to the file keeps them exactly).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2

from . import pathnames
from .files import write_bytes
from .images import ImageError, ImageInput, to_pixels

THUMB = 200

_FIGURE_H = int(THUMB * 0.75)
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:24px;background:#f6f6f6;color:#222}"
    "h1{font-size:20px} h2{font-size:16px;margin:28px 0 8px;word-break:break-all}"
    ".grid{display:flex;flex-wrap:wrap;gap:12px}"
    f"figure{{margin:0;width:{THUMB + 14}px;background:#fff;border:1px solid #ddd;border-radius:6px;"
    "padding:6px;box-sizing:border-box}"
    f"figure img{{width:100%;height:{_FIGURE_H}px;object-fit:contain;background:#eee;display:block}}"
    "figcaption{font-size:12px;margin-top:4px;word-break:break-all}"
    ".pct{font-weight:600;font-size:14px} .keep{border:2px solid #2a7} .query{border:2px solid #36c}"
    f".missing{{height:{_FIGURE_H}px;display:flex;align-items:center;justify-content:center;color:#999;"
    "background:#eee}"
)


def thumbnail(image: ImageInput, size: int = THUMB) -> str | None:
    """A JPEG data URI of the image at most ``size`` px wide, or None if it cannot be read."""
    try:
        pixels = to_pixels(image, size)
    except ImageError:
        return None
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None


def _link(path: str) -> str:
    try:
        return Path(os.path.abspath(path)).as_uri()
    except ValueError:
        return "#"


def text(name: str) -> str:
    """A file name as HTML text."""
    return html.escape(pathnames.shown(name))


def figure(path: str, caption: str, css: str = "", shown: str | None = None) -> str:
    uri = thumbnail(path)
    img = (
        f'<img src="{uri}" alt="{text(shown or path)}">' if uri else '<div class="missing">not readable</div>'
    )
    return (
        f'<figure class="{css}"><a href="{html.escape(_link(path))}">{img}</a>'
        f"<figcaption>{caption}<br>{text(shown or path)}</figcaption></figure>"
    )


def checked(inliers: int | None, agreement: float | None, residual: float | None) -> str:
    """What verification found, as a caption's tail: its inliers and, where they verify the pair,
    how well the aligned pictures agree and how far the inliers stray (nothing if not checked)."""
    if inliers is None:
        return ""
    agrees = "" if agreement is None else f", agreement {agreement:.3f}"
    strays = "" if residual is None else f", residual {residual:.2f}"
    return f" · {inliers} inliers{agrees}{strays}"


def page(title: str, body: Iterable[str]) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>"
    )


def write(path: str | os.PathLike, content: str) -> Path:
    return write_bytes(Path(path).expanduser(), content.encode())


def results_page(sections: Sequence[tuple[str, list]], shown=lambda p: p) -> str:
    """One section per query: the query image, then its hits with rank and similarity."""
    body = []
    for query, hits in sections:
        parts = [figure(query, "query", "query", shown(query))]
        parts += [
            figure(
                h.path,
                f'<span class="pct">{h.similarity:.1f}%</span> · #{h.rank}'
                + checked(h.inliers, h.agreement, h.residual),
                shown=shown(h.path),
            )
            for h in hits
        ]
        body.append(f'<h2>{text(shown(query))}</h2><div class="grid">{"".join(parts)}</div>')
    return page(f"vecsearch: {len(sections)} {'query' if len(sections) == 1 else 'queries'}", body)


def groups_page(groups: Sequence[list[dict]], shown=lambda p: p) -> str:
    """One row per near-duplicate group; the suggested keeper is outlined."""
    body = []
    for n, members in enumerate(groups, 1):
        parts = [
            figure(
                m["path"],
                ("keep · " if m["keep"] else "")
                + f'<span class="pct">{m["similarity"]:.1f}%</span> · {m["width"]}×{m["height"]}'
                + checked(m.get("inliers"), m.get("agreement"), m.get("residual")),
                "keep" if m["keep"] else "",
                shown(m["path"]),
            )
            for m in members
        ]
        body.append(f'<h2>group {n} · {len(members)} images</h2><div class="grid">{"".join(parts)}</div>')
    return page(f"vecsearch: {len(groups)} groups of near-duplicates", body)

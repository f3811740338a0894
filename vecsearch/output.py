"""Results as the command line prints them: a table for people, JSON lines or CSV for programs.

Paths are exact in JSON (bytes that are not UTF-8 as ``\\udcXX`` escapes, which json.loads and
os.fsencode turn back into the name) and in CSV (the name's own bytes); the table shows them as
text (``\\xNN``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Callable, Sequence

from .pathnames import shown

FORMATS = ("table", "json", "csv")
_SURROGATE = re.compile("[\udc80-\udcff]")


def render(rows: Sequence[dict], format: str, columns: Sequence[str], group_by: str | None = None) -> bytes:
    """The rows in ``format``, as bytes ready for stdout or a file."""
    if format == "json":
        text = "".join(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n" for r in rows)
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()
    if format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().encode("utf-8", "surrogateescape")
    return _table(rows, columns, group_by).encode("utf-8", "surrogateescape")


def _cell(value) -> str:
    if value is None:
        return ""
    return shown(value) if isinstance(value, str) else str(value)


def _table(rows: Sequence[dict], columns: Sequence[str], group_by: str | None) -> str:
    """Aligned columns; with ``group_by``, a header per group and "(none)" for a group whose only
    row has no values (a query without hits)."""
    shown_cols = [c for c in columns if c != group_by]
    cells = [[_cell(r.get(c)) for c in shown_cols] for r in rows]
    widths = [max([len(c)] + [len(t[i]) for t in cells]) for i, c in enumerate(shown_cols)]
    header = "  ".join(c.ljust(w) for c, w in zip(shown_cols, widths)).rstrip()
    lines: list[str] = [] if group_by else [header]
    current = object()
    for r, t in zip(rows, cells):
        if group_by and r[group_by] != current:
            current = r[group_by]
            lines += ([""] if lines else []) + [f"{group_by}: {_cell(current)}"]
            if not any(t):
                lines.append(r.get("note") or "(none)")
                continue
            lines.append(header)
        lines.append("  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip())
    return "\n".join(lines) + "\n" if lines else ""


def write_stdout(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def hit_fields(hit, path: Callable[[str], str] = shown) -> dict:
    """A search hit as ``query --format json`` and the server's API show it."""
    return {
        "rank": hit.rank,
        "similarity": round(hit.similarity, 1),
        "distance": round(hit.distance, 4),
        "id": hit.id,
        "path": path(hit.path),
        **_checked(hit),
    }


def member_fields(member, path: Callable[[str], str] = shown) -> dict:
    """A member of a near-duplicate group as ``dedup --format json`` and the server's API show it."""
    return {
        **member.as_dict(),
        "path": path(member.path),
        "similarity": round(member.similarity, 1),
        **_checked(member),
    }


def _checked(found) -> dict:
    """What verification found for a hit or a group member (None where it was not checked)."""
    return {
        "inliers": found.inliers,
        "agreement": None if found.agreement is None else round(found.agreement, 3),
        "residual": None if found.residual is None else round(found.residual, 3),
    }


def relative(base: str | None) -> Callable[[str], str]:
    """How paths are printed: as stored (absolute), or relative to a folder the user names."""
    if base is None:
        return lambda p: p
    root = os.path.abspath(os.path.expanduser(base))
    return lambda p: os.path.relpath(p, root)

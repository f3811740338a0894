"""File names in tables: exact, whatever bytes they are made of.

A Linux path is bytes; vecsearch holds it as ``os.fsdecode`` does (bytes that are not UTF-8 become
lone surrogates), so the name a user typed on the command line matches the one stored. Arrow and
Parquet text must be UTF-8, so a table keeps such a name twice: ``path`` shows it (the odd bytes
as ``\\xNN``) and ``path_bytes`` holds it exactly. The ``path_bytes`` column is there only when some
row needs it, so tables of ordinary names are what any tool expects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

BYTES = "path_bytes"


def is_text(path: str) -> bool:
    """True when the name is valid UTF-8 (it needs no ``path_bytes``)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(path: str) -> str:
    """The name as text: bytes that are not UTF-8 written as ``\\xNN``."""
    return path if is_text(path) else os.fsencode(path).decode("utf-8", "backslashreplace")


def columns(paths: Sequence[str]) -> dict[str, pa.Array]:
    """``path`` (and ``path_bytes`` where some name is not UTF-8) for a table of these paths."""
    import pyarrow as pa  # here: the command line shows names without loading Arrow

    out = {"path": pa.array([shown(p) for p in paths], pa.string())}
    if not all(is_text(p) for p in paths):
        out[BYTES] = pa.array([None if is_text(p) else os.fsencode(p) for p in paths], pa.binary())
    return out


def of(table: pa.Table) -> list[str]:
    """The exact paths of a table written with ``columns``."""
    text = table["path"].to_pylist()
    if BYTES not in table.column_names:
        return text
    return [t if b is None else os.fsdecode(b) for t, b in zip(text, table[BYTES].to_pylist())]

"""Byte sizes as people write them: 4G, 512M, 1.5GB, or a plain number of bytes."""

from __future__ import annotations

import re

UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str | int | float | None) -> int | None:
    """'4G', '512M', '1.5GB', 1000000 → bytes (binary units); None for no limit."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        size = int(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[iI]?[bB]?\s*", str(text))
        if not m:
            raise ValueError(f"{text!r} is not a size like 512M or 4G")
        size = int(float(m.group(1)) * UNITS[m.group(2).lower()])
    if size <= 0:
        raise ValueError(f"a size must be more than 0 bytes, not {text!r}")
    return size

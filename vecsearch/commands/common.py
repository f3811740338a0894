"""What the commands share: the kinds of their arguments, their exit statuses, and the checks made
before any work (an output that could not be written, an index path that is a file)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

from ..arguments import UsageError, Value
from ..sizes import parse_bytes

DEFAULT_INDEX = "indexes/default"

Dir = Annotated[str, Value("DIR", words="a folder")]
File = Annotated[str | None, Value("FILE", words="a file name")]
Count = Annotated[int, Value("N", low=1)]
Workers = Annotated[int | None, Value("N", low=0)]
Percent = Annotated[float, Value("PCT", low=0, high=100)]
Format = Literal["table", "json", "csv"]
Size = Annotated[str | None, Value("SIZE", parse=parse_bytes, words="a size like 512M or 4G")]

#: Exit statuses shared by the commands (README, "Exit status").
OK, NOTHING, ERROR, SOME_FAILED = 0, 1, 2, 3

log = logging.getLogger("vecsearch")


def say(message: str) -> None:
    print(message, file=sys.stderr)


def setup_logging(quiet: bool) -> None:
    """Stage logs on stderr at INFO (their messages only), or warnings only with ``quiet``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def writable(flag: str, path: str) -> Path:
    """Refuse, before any work, an output the command could not write at the end."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    folder = p.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: cannot write in {folder} (permission denied)")
    return p


def index_target(index: str) -> Path:
    """Refuse an index path that is a file, before anything is read or written."""
    p = Path(index).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"--index {index}: is a file, not an index directory")
    return p

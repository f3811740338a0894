"""What to index: image files from folders, files, globs and lists; Parquet files of vectors.

Sources that match nothing, and folders that cannot be listed, are reported rather than raised,
so one typo does not abort a long build; a build that finds no image at all stops with
``NoImagesError``.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .stages import stage

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
LIST_SUFFIXES = frozenset({".txt", ".lst"})

Sources = Sequence[str | os.PathLike] | str | os.PathLike | None


class NoImagesError(ValueError):
    """Nothing to index: the sources hold no image, or none could be read."""


@dataclass(frozen=True)
class ScanProblem:
    path: str
    reason: str


def _read_list(path: Path) -> Iterator[Path]:
    base = path.parent
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(os.path.expanduser(line))
                yield p if p.is_absolute() else base / p


def _walk(root: Path, problems: list[ScanProblem]) -> Iterator[Path]:
    def onerror(err: OSError) -> None:
        problems.append(ScanProblem(str(err.filename), f"cannot list directory: {err.strerror}"))

    # followlinks=False: a symlink loop cannot make the walk endless.
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield Path(dirpath) / name


def iter_image_paths(
    sources: Iterable[str | os.PathLike], problems: list[ScanProblem] | None = None
) -> Iterator[str]:
    """Yield image paths from folders (recursive), files, glob patterns and .txt/.lst lists of paths.

    Paths are absolute and each is yielded once. Sources that match nothing are recorded in
    ``problems`` (when given) instead of raising, so one typo does not abort a long build.
    """
    problems = problems if problems is not None else []
    seen: set[str] = set()
    for source in sources:
        source = os.path.expanduser(os.fspath(source))
        p = Path(source)
        if p.is_dir():
            candidates: Iterable[Path] = _walk(p, problems)
        elif p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
            candidates = _read_list(p)
        elif p.exists() or p.is_symlink():
            candidates = [p]
        elif glob.has_magic(source):
            matches = sorted(glob.glob(source, recursive=True))
            candidates = [
                Path(m) for m in matches if Path(m).is_file() and Path(m).suffix.lower() in IMAGE_EXTENSIONS
            ]
            if not matches:
                problems.append(ScanProblem(source, "pattern matches no file"))
        else:
            problems.append(ScanProblem(source, "no such file or directory"))
            continue
        for c in candidates:
            key = os.path.abspath(c)
            if key in seen:
                continue
            seen.add(key)
            yield key


def as_list(sources: Sources) -> list[str]:
    """One source or several, as a list of path strings."""
    if sources is None:
        return []
    if isinstance(sources, (str, os.PathLike)):
        return [os.fspath(sources)]
    return [os.fspath(s) for s in sources]


def scan(sources: Sources, quiet: bool = True) -> tuple[list[str], list[tuple[str, str]]]:
    """All image paths of the sources (scan order) and the sources that could not be read."""
    problems: list[ScanProblem] = []
    with stage("scan", unit="files", quiet=quiet) as st:
        paths = []
        for p in iter_image_paths(as_list(sources), problems):
            paths.append(p)
            st.update()
    return paths, [(p.path, p.reason) for p in problems]


def scan_images(sources: Sources, quiet: bool = True) -> tuple[list[str], list[tuple[str, str]]]:
    """``scan``, refusing sources that hold no image at all."""
    paths, skipped = scan(sources, quiet)
    if not paths:
        why = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        given = ", ".join(as_list(sources))
        raise NoImagesError(f"no images found in {given}{f' ({why})' if why else ''}")
    return paths, skipped


def vector_files(vectors: Sources) -> list[Path]:
    """Parquet vector files: given one by one, or as folders of ``*.parquet`` parts (as Dask and
    Spark write them)."""
    out: list[Path] = []
    for v in as_list(vectors):
        p = Path(v).expanduser()
        if p.is_dir():
            parts = sorted(p.glob("*.parquet"))
            if not parts:
                raise ValueError(f"{p}: no .parquet files in this folder")
            out += parts
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"{p}: no such vectors file")
    return out

"""The manifest of an index directory, typed: which files make the current version and what they hold.

``manifest.json`` is the one entry point of a reader: a commit writes it last, atomically. Fields
added after the first indexes were built have defaults here, so older manifests load with the
values those indexes were built with. Nothing outside this module reads the JSON by key.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: 2: the calibration may be relative (calibration.py), which format 1 readers would misread.
FORMAT = 2
MANIFEST = "manifest.json"
ENCODER_FILE = "encoder.npz"
WORK = ".build"  # the work directory of an unfinished build or add (workdir.py)


class IndexDirError(RuntimeError):
    """A missing, damaged or incompatible index directory; the message names the file."""


@dataclass
class FileEntry:
    name: str
    bytes: int | None = None
    sha256: str | None = None


@dataclass
class IndexSpec:
    """Which FAISS index was chosen and how it was tuned."""

    factory: str = "IVF1,Flat"
    nlist: int = 1
    nprobe: int = 1
    recall_at_10: float | None = None
    memory_budget: int | None = None
    trained_on: int = 0  # vectors in the index when it was trained (retraining pays off far above)
    rerank: int = 0  # PQ: candidates fetched per hit, re-ranked by exact distance (rerank.py); 0: none

    @property
    def exhaustive(self) -> bool:
        """One list of raw vectors: every search scans everything, so it is exact."""
        return self.nlist == 1 and self.factory.endswith(",Flat")


@dataclass
class EncoderEntry:
    fingerprint: str = ""
    dim: int = 0
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Counts:
    images: int = 0
    skipped: int = 0
    max_id: int = -1  # the largest id ever given: ids are never reused


@dataclass
class Manifest:
    version: int = 0
    files: dict[str, FileEntry] = field(default_factory=dict)
    encoder: EncoderEntry = field(default_factory=EncoderEntry)
    index: IndexSpec = field(default_factory=IndexSpec)
    counts: Counts = field(default_factory=Counts)
    libraries: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None
    committed_at: str | None = None
    encoder_trained_on: int | None = None  # images in the collection when its encoder was trained
    format: int = FORMAT

    def to_json(self) -> str:
        raw = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Any, source: str = MANIFEST) -> Manifest:
        """Validate and type a parsed manifest; IndexDirError naming ``source`` if it is damaged."""
        if not isinstance(raw, dict) or "format" not in raw or "files" not in raw:
            raise IndexDirError(f"{source}: damaged manifest (missing 'format' or 'files')")
        if int(raw["format"]) > FORMAT:
            raise IndexDirError(
                f"{source}: index format {raw['format']} is newer than this vecsearch reads ({FORMAT}); "
                "upgrade vecsearch"
            )
        try:
            return cls(
                version=int(raw.get("version", 0)),
                files={role: _typed(FileEntry, e) for role, e in raw["files"].items()},
                encoder=_typed(EncoderEntry, raw.get("encoder", {})),
                index=_typed(IndexSpec, raw.get("index", {})),
                counts=_typed(Counts, raw.get("counts", {})),
                libraries=dict(raw.get("libraries", {})),
                created_at=raw.get("created_at"),
                committed_at=raw.get("committed_at"),
                encoder_trained_on=raw.get("encoder_trained_on"),
                format=int(raw["format"]),
            )
        except (TypeError, ValueError, AttributeError) as e:
            raise IndexDirError(f"{source}: damaged manifest ({e})") from None


def _typed(cls: type, raw: Any) -> Any:
    """A dataclass from a JSON object, ignoring keys it does not know (written by a newer vecsearch)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(raw).items() if k in known})


@dataclass
class Version:
    """One committed version of an index directory."""

    root: Path
    manifest: Manifest

    def file(self, role: str) -> Path:
        entry = self.manifest.files.get(role)
        if entry is None:
            raise IndexDirError(f"{self.root / MANIFEST}: lists no '{role}' file")
        return self.root / entry.name

    def has(self, role: str) -> bool:
        return role in self.manifest.files

    @property
    def number(self) -> int:
        return self.manifest.version


def read_version(root: str | os.PathLike) -> Version:
    """The current version of the index at ``root``; IndexDirError with a one-line reason otherwise."""
    root = Path(root).expanduser()
    path = root / MANIFEST
    if not root.exists():
        raise IndexDirError(f"{root}: no index here (build one with 'vecsearch build SOURCE --index {root}')")
    if not root.is_dir():
        raise IndexDirError(f"{root}: is a file, not an index directory")
    if not path.is_file():
        if (root / WORK).is_dir():
            raise IndexDirError(
                f"{root}: no version committed yet: a build is running here, or was interrupted "
                "(the same build command, run again, resumes it)"
            )
        raise IndexDirError(f"{root}: not a vecsearch index (no {MANIFEST})")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexDirError(f"{path}: damaged manifest ({e})") from None
    return Version(root, Manifest.from_dict(raw, str(path)))


def encoder_file(path: str | os.PathLike) -> Path:
    """An encoder file from a .npz path, a folder holding encoder.npz, or an index directory."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / MANIFEST).exists():
            return read_version(p).file("encoder")
        if (p / ENCODER_FILE).exists():
            return p / ENCODER_FILE
        raise IndexDirError(f"{p}: holds neither an index nor an {ENCODER_FILE}")
    if not p.exists():
        raise IndexDirError(f"{p}: no such encoder file or index directory")
    return p

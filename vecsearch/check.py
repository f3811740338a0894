"""Verify an index directory: checksums, counts and ids agree across manifest, FAISS and metadata."""

from __future__ import annotations

import os

import faiss
import numpy as np

from . import ivf, store
from .calibration import Calibration
from .encoder import Encoder
from .files import sha256
from .manifest import IndexDirError, read_version


def _faiss_ids(index: faiss.Index) -> np.ndarray:
    lists = ivf.extract_ivf(index).invlists
    sizes = [lists.list_size(n) for n in range(lists.nlist)]
    parts = [faiss.rev_swig_ptr(lists.get_ids(n), size).copy() for n, size in enumerate(sizes) if size]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def check(path: str | os.PathLike) -> list[str]:
    """Everything found wrong with the index at ``path``, one sentence each naming the file; [] if sound."""
    try:
        version = read_version(path)
    except IndexDirError as e:
        return [str(e)]
    problems = []
    for role, entry in version.manifest.files.items():
        f = version.root / entry.name
        if not f.is_file():
            problems.append(f"{f}: {role} file is missing")
        elif f.stat().st_size != entry.bytes:
            problems.append(f"{f}: {role} file has {f.stat().st_size} bytes, the manifest says {entry.bytes}")
        elif sha256(f) != entry.sha256:
            problems.append(f"{f}: {role} file's checksum does not match the manifest (altered or damaged)")
    if problems:
        return problems
    try:
        enc = Encoder.load(version.file("encoder"))
        Calibration.load(version.file("calibration"))
        meta = store.read_metadata(version.file("metadata"))
        index = ivf.load(version.file("index"), mmap=False)
    except (ValueError, OSError, RuntimeError, IndexDirError) as e:
        return [str(e).splitlines()[0]]
    images = version.manifest.counts.images
    if index.d != enc.dim:
        problems.append(f"{version.file('index')}: dimension {index.d}, encoder makes {enc.dim}")
    if not (index.ntotal == len(meta) == images):
        problems.append(
            f"counts disagree: FAISS holds {index.ntotal} vectors, metadata {len(meta)} rows, "
            f"manifest says {images}"
        )
    ids = meta["id"].to_numpy()
    if len(np.unique(ids)) != len(ids):
        problems.append(f"{version.file('metadata')}: duplicate ids")
    fids = np.sort(_faiss_ids(index))
    if len(fids) == len(ids) and not np.array_equal(fids, np.sort(ids)):
        problems.append(f"{version.file('index')}: its ids are not the metadata's ids")
    return problems

"""Verify an index directory: checksums, counts and ids agree across manifest, FAISS and metadata."""

from __future__ import annotations

import os

import faiss
import numpy as np

from . import index as faiss_index
from . import store
from .calibration import Calibration
from .encoder import Encoder


def _faiss_ids(idx: faiss.Index) -> np.ndarray:
    ivf = faiss_index.extract_ivf(idx)
    inv = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(inv.get_ids(l), inv.list_size(l)).copy()
        for l in range(ivf.nlist)
        if inv.list_size(l)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def check(path: str | os.PathLike) -> list[str]:
    """Everything found wrong with the index at ``path``, one sentence each naming the file; [] if sound."""
    try:
        version = store.read_manifest(path)
    except store.IndexError_ as e:
        return [str(e)]
    problems = []
    for role, entry in version.manifest["files"].items():
        f = version.root / entry["name"]
        if not f.is_file():
            problems.append(f"{f}: {role} file is missing")
        elif f.stat().st_size != entry.get("bytes"):
            problems.append(
                f"{f}: {role} file has {f.stat().st_size} bytes, the manifest says {entry.get('bytes')}"
            )
        elif store.sha256_file(f) != entry.get("sha256"):
            problems.append(f"{f}: {role} file's checksum does not match the manifest (altered or damaged)")
    if problems:
        return problems
    try:
        enc = Encoder.load(version.file("encoder"))
        Calibration.load(version.file("calibration"))
        meta = store.read_metadata(version.file("metadata"))
        idx = faiss_index.load(version.file("index"), mmap=False)
    except (ValueError, OSError, RuntimeError, store.IndexError_) as e:
        return [str(e).splitlines()[0]]
    counts = version.manifest.get("counts", {})
    if idx.d != enc.dim:
        problems.append(f"{version.file('index')}: dimension {idx.d}, encoder makes {enc.dim}")
    if not (idx.ntotal == len(meta) == counts.get("images")):
        problems.append(
            f"counts disagree: FAISS holds {idx.ntotal} vectors, metadata {len(meta)} rows, manifest says {counts.get('images')}"
        )
    ids = meta["id"].to_numpy()
    if len(np.unique(ids)) != len(ids):
        problems.append(f"{version.file('metadata')}: duplicate ids")
    fids = np.sort(_faiss_ids(idx))
    if len(fids) == len(ids) and not np.array_equal(fids, np.sort(ids)):
        problems.append(f"{version.file('index')}: its ids are not the metadata's ids")
    return problems

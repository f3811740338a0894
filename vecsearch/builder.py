"""The build pipeline: scan → train encoder → encode batches (resumable) → index → calibrate → commit.

Encoded batches are written as Parquet chunks under ``<index>/.build/`` as they finish, so a build
that is killed and started again with the same sources only encodes what is missing. Ids are the
positions of the files in scan order, which makes the result independent of how often the build
was interrupted or in which order workers finished.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from . import calibration as calib
from . import executors, store
from . import images as imgs
from . import index as faiss_index
from .edits import random_edit
from .encoder import EncodedFiles, Encoder, EncoderConfig

log = logging.getLogger(__name__)

CALIBRATION_SAMPLE = 200
CALIBRATION_K = 10


@dataclass
class BuildReport:
    indexed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        reasons: dict[str, int] = {}
        for _, r in self.skipped:
            key = r.split(":")[0].split("(")[0].strip()
            reasons[key] = reasons.get(key, 0) + 1
        why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
        rate = self.indexed / self.seconds if self.seconds else 0.0
        return f"indexed {self.indexed} images, skipped {len(self.skipped)}{f' ({why})' if why else ''} in {self.seconds:.1f}s ({rate:.1f} images/s)"


def progress(total: int | None, desc: str, quiet: bool, unit: str = "img") -> tqdm:
    """A tqdm bar on stderr, silent when stderr is not a terminal or when quiet."""
    return tqdm(total=total, desc=desc, unit=unit, disable=True if quiet else None, file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


def _chunk_schema(d: int) -> pa.Schema:
    return pa.schema(
        [
            ("path", pa.string()),
            ("vector", pa.list_(pa.float32(), d)),
            ("bytes", pa.int64()),
            ("mtime", pa.float64()),
            ("sha1", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("error", pa.string()),
        ]
    )


def chunk_table(result: EncodedFiles, d: int) -> pa.Table:
    n_ok = len(result.infos)
    rows_path = [i.path for i in result.infos] + [p for p, _ in result.failures]
    flat = pa.array(np.ascontiguousarray(result.vectors, np.float32).ravel(), pa.float32())
    vectors = pa.FixedSizeListArray.from_arrays(flat, d)
    vectors = pa.concat_arrays([vectors, pa.nulls(len(result.failures), pa.list_(pa.float32(), d))]) if result.failures else vectors
    pad = [None] * len(result.failures)
    return pa.Table.from_arrays(
        [
            pa.array(rows_path, pa.string()),
            vectors,
            pa.array([i.bytes for i in result.infos] + pad, pa.int64()),
            pa.array([i.mtime for i in result.infos] + pad, pa.float64()),
            pa.array([i.sha1 for i in result.infos] + pad, pa.string()),
            pa.array([i.width for i in result.infos] + pad, pa.int32()),
            pa.array([i.height for i in result.infos] + pad, pa.int32()),
            pa.array([None] * n_ok + [r for _, r in result.failures], pa.string()),
        ],
        schema=_chunk_schema(d),
    )


def vectors_of(table: pa.Table) -> np.ndarray:
    """(n, d) float32 view of a fixed-size-list vector column (rows must be non-null)."""
    col = table["vector"].combine_chunks()
    d = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).reshape(-1, d).astype(np.float32, copy=False)


class WorkDir:
    """``<index>/.build``: the encoder and the finished chunks of an interrupted build."""

    def __init__(self, root: Path, key: str):
        self.path = root / store.WORK
        state = self.path / "state.json"
        if self.path.exists():
            try:
                same = json.loads(state.read_text()).get("key") == key
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        if not state.exists():
            store.atomic_write_bytes(state, json.dumps({"key": key}).encode())

    @property
    def encoder_path(self) -> Path:
        return self.path / "encoder.npz"

    def chunks(self) -> list[Path]:
        return sorted(self.path.glob("chunk-*.parquet"))

    def done_paths(self) -> set[str]:
        done: set[str] = set()
        for c in self.chunks():
            try:
                done.update(pq.read_table(c, columns=["path"])["path"].to_pylist())
            except (OSError, pa.ArrowInvalid):
                c.unlink()  # only a chunk of a crash can be unreadable: do it again
        return done

    def write_chunk(self, number: int, table: pa.Table) -> None:
        store.write_parquet(table, self.path / f"chunk-{number:06d}.parquet")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _key(kind: str, paths: Sequence[str], extra: str = "") -> str:
    h = hashlib.sha1(kind.encode() + extra.encode())
    for p in paths:
        h.update(p.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _batches(paths: Sequence[str], done: set[str], batch_size: int, first: int) -> Iterator[executors.Task]:
    pending = [p for p in paths if p not in done]
    for i in range(0, len(pending), batch_size):
        yield first + i // batch_size, pending[i : i + batch_size]


def encode_to_chunks(work: WorkDir, encoder: Encoder, paths: Sequence[str], *, workers: int | None, scheduler: str | None, batch_size: int, quiet: bool) -> None:
    """Encode every path not yet in a finished chunk, writing one chunk per batch as it completes."""
    done = work.done_paths()
    first = len(work.chunks()) and max(int(c.stem.split("-")[1]) for c in work.chunks()) + 1
    todo = sum(1 for p in paths if p not in done)
    with progress(len(paths), "encode", quiet) as bar:
        bar.update(len(paths) - todo)
        tasks = _batches(paths, done, batch_size, first)
        for number, result in executors.run(encoder, str(work.encoder_path), tasks, workers, scheduler):
            work.write_chunk(number, chunk_table(result, encoder.dim))
            bar.update(len(result.infos) + len(result.failures))


def _read_chunks(chunks: Sequence[Path], columns: list[str] | None = None) -> Iterator[pa.Table]:
    for c in chunks:
        yield pq.read_table(c, columns=columns)


def fill_index(chunks: Sequence[Path], ids_of: dict[str, int], d: int, memory_budget: int | None, quiet: bool, base: faiss_index.IndexSpec | None = None):
    """Create, train, fill and tune a FAISS index from chunk files; returns (index, spec, metadata)."""
    rng = np.random.default_rng(0)
    n = 0
    for c in chunks:
        n += pq.ParquetFile(c).metadata.num_rows
    spec = faiss_index.choose(n, d, memory_budget)
    sample_rows = faiss_index.train_size(spec)
    train = []
    got = 0
    for t in _read_chunks(chunks):
        t = t.filter(pa.compute.is_null(t["error"]))
        if got < sample_rows and len(t):
            v = vectors_of(t)
            take = v[rng.permutation(len(v))[: sample_rows - got]]
            train.append(take)
            got += len(take)
    train_vectors = np.concatenate(train) if train else np.zeros((1, d), np.float32)
    index = faiss_index.create(spec, d, train_vectors)
    meta_parts = []
    now = pa.scalar(int(time.time()), pa.timestamp("s", tz="UTC"))
    with progress(n, "index", quiet) as bar:
        for t in _read_chunks(chunks):
            ok = t.filter(pa.compute.is_null(t["error"]))
            if len(ok):
                ids = np.array([ids_of[p] for p in ok["path"].to_pylist()], np.int64)
                faiss_index.add(index, vectors_of(ok), ids)
                meta_parts.append(
                    pa.table(
                        {
                            "id": pa.array(ids, pa.int64()),
                            "path": ok["path"],
                            "bytes": ok["bytes"],
                            "mtime": ok["mtime"],
                            "sha1": ok["sha1"],
                            "width": ok["width"],
                            "height": ok["height"],
                            "added_at": pa.array([now.value] * len(ok), pa.timestamp("s", tz="UTC")),
                        },
                        schema=store.METADATA_SCHEMA,
                    )
                )
            bar.update(len(t))
    if not spec.exact and index.ntotal:
        queries = train_vectors[: min(500, len(train_vectors))]
        gt_pos = faiss_index.exact_neighbours(queries, (vectors_of(t.filter(pa.compute.is_null(t["error"]))) for t in _read_chunks(chunks)))
        order_ids = np.concatenate([np.array([ids_of[p] for p in t.filter(pa.compute.is_null(t["error"]))["path"].to_pylist()], np.int64) for t in _read_chunks(chunks, ["path", "error"])])
        gt = np.where(gt_pos >= 0, order_ids[np.maximum(gt_pos, 0)], -1)
        spec.nprobe, spec.recall_at_10 = faiss_index.tune_nprobe(index, queries, gt)
        faiss_index.set_nprobe(index, spec.nprobe)
    meta = pa.concat_tables(meta_parts) if meta_parts else store.METADATA_SCHEMA.empty_table()
    meta = meta.sort_by("id")
    return index, spec, meta


def fit_calibration(encoder: Encoder, index, items: Sequence[tuple[int, str]], quiet: bool, seed: int = 0) -> calib.Calibration:
    """Query the index with edited copies of sampled indexed images and fit distance → probability.

    ``items`` are (id, path) of indexed images. The source of a copy is a true match; the other top
    hits are not (exact duplicates, at distance 0, are left out of the negatives).
    """
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(items), min(CALIBRATION_SAMPLE, len(items)), replace=False)) if items else []
    copies = max(1, min(10, -(-100 // max(1, len(picks)))))
    originals, orig_ids, edited, source = [], [], [], []
    with progress(len(picks), "calibrate", quiet) as bar:
        for i in picks:
            sid, path = items[i]
            try:
                pixels = imgs.to_pixels(path, encoder.config.max_side)
            except imgs.ImageError:
                continue
            originals.append(pixels)
            orig_ids.append(sid)
            for _ in range(copies):
                edited.append(random_edit(pixels, rng))
                source.append(len(originals) - 1)
            bar.update(1)
    if not originals:
        raise ValueError("no readable image to calibrate on")
    v_orig = encoder.encode(originals)
    v_edit = encoder.encode(edited)
    positive = np.sum((v_edit - v_orig[source]) ** 2, axis=1)
    dist, ids = faiss_index.search(index, v_edit, CALIBRATION_K + 1)
    negative = []
    for q, o in enumerate(source):
        others = [d for d, i in zip(dist[q], ids[q]) if i >= 0 and i != orig_ids[o] and d > 1e-6]
        negative.extend(others[:CALIBRATION_K])
    if len(negative) < 20:  # a tiny collection: add unrelated pairs from the shipped example photos
        from .encoder import example_images

        ex = encoder.encode(example_images())
        negative += [float(np.sum((a - b) ** 2)) for i, a in enumerate(ex) for b in ex[i + 1 :]]
    return calib.fit(positive, np.array(negative))


class NoImagesError(ValueError):
    pass


def scan(sources: Sequence[str | os.PathLike], quiet: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """All image paths of the sources (scan order) and the sources that could not be read."""
    problems: list[imgs.ScanProblem] = []
    with progress(None, "scan", quiet, unit="file") as bar:
        paths = []
        for p in imgs.iter_image_paths(sources, problems):
            paths.append(p)
            bar.update(1)
    return paths, [(p.path, p.reason) for p in problems]


def _as_list(sources) -> list[str]:
    if isinstance(sources, (str, os.PathLike)):
        return [os.fspath(sources)]
    return [os.fspath(s) if isinstance(s, os.PathLike) else str(s) for s in sources]


def train_encoder(paths: Sequence[str], config: EncoderConfig, quiet: bool) -> Encoder:
    """Fit an encoder on a seeded random sample of ``config.train_images`` of the paths."""
    rng = np.random.default_rng(config.seed)
    sample = [paths[i] for i in sorted(rng.choice(len(paths), min(config.train_images, len(paths)), replace=False))]
    with progress(len(sample), "train", quiet) as bar:
        return Encoder.fit(sample, config, progress=bar.update)


def build(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    index: str | os.PathLike,
    *,
    encoder: str | os.PathLike | Encoder | None = None,
    retrain: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    batch_size: int = 64,
    memory_budget: str | int | None = None,
    config: EncoderConfig | None = None,
    quiet: bool = False,
):
    """Index the images of ``sources`` (folders, files, globs, .txt lists) into the directory ``index``.

    The encoder is, in order: the one given; the existing index's (unless ``retrain``); or one
    trained on a sample of the sources. ``workers=0`` encodes in this process, ``None`` uses every
    core; ``scheduler`` (e.g. ``tcp://host:8786``) encodes on a Dask cluster. Started again after an
    interruption with the same sources, it resumes. Returns the opened ``Index``.
    """
    from .search import open_index

    t0 = time.time()
    root = Path(index).expanduser()
    budget = faiss_index.parse_bytes(memory_budget)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    with store.writer_lock(root):
        previous = store.read_manifest(root) if (root / store.MANIFEST).exists() else None
        paths, skipped = scan(_as_list(sources), quiet)
        if not paths:
            why = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
            raise NoImagesError(f"no images found in {', '.join(_as_list(sources))}{f' ({why})' if why else ''}")
        if isinstance(encoder, (str, os.PathLike)):
            encoder = Encoder.load(encoder)
        elif encoder is None and previous is not None and not retrain:
            encoder = Encoder.load(previous.file("encoder"))
        key = _key("build", paths, encoder.fingerprint() if encoder is not None else f"train:{(config or EncoderConfig()).to_json()}")
        work = WorkDir(root, key)
        if encoder is None:
            encoder = Encoder.load(work.encoder_path) if work.encoder_path.exists() else train_encoder(paths, config or EncoderConfig(), quiet)
        if not work.encoder_path.exists():
            encoder.save(work.encoder_path)
        encode_to_chunks(work, encoder, paths, workers=workers, scheduler=scheduler, batch_size=batch_size, quiet=quiet)
        chunks = work.chunks()
        for t in _read_chunks(chunks, ["path", "error"]):
            skipped += [(p, e) for p, e in zip(t["path"].to_pylist(), t["error"].to_pylist()) if e is not None]
        ids_of = {p: i for i, p in enumerate(paths)}
        faiss_idx, spec, meta = fill_index(chunks, ids_of, encoder.dim, budget, quiet)
        if not len(meta):
            why = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
            raise NoImagesError(f"none of the {len(paths)} files could be read as an image ({why})")
        cal = fit_calibration(encoder, faiss_idx, list(zip(meta["id"].to_pylist(), meta["path"].to_pylist())), quiet)
        version = commit_version(root, previous, encoder, faiss_idx, spec, meta, cal, skipped, sources=_as_list(sources), trained_on=len(paths))
        work.remove()
    report = BuildReport(len(meta), skipped, time.time() - t0)
    log.debug(report.summary())
    opened = open_index(root)
    opened.last_build = report
    return opened


def commit_version(root: Path, previous, encoder: Encoder, faiss_idx, spec, meta: pa.Table, cal: calib.Calibration, skipped, **extra) -> store.Version:
    """Write the files of a new version under versioned names and switch the manifest to them."""
    v = previous.number + 1 if previous else 1
    files = {
        "encoder": root / store.versioned_name("encoder", v, ".npz"),
        "index": root / store.versioned_name("index", v, ".faiss"),
        "metadata": root / store.versioned_name("metadata", v, ".parquet"),
        "calibration": root / store.versioned_name("calibration", v, ".json"),
        "skipped": root / store.versioned_name("skipped", v, ".parquet"),
    }
    encoder.save(files["encoder"])
    faiss_index.save(faiss_idx, files["index"])
    store.write_parquet(meta, files["metadata"])
    store.atomic_write_bytes(files["calibration"], cal.to_json().encode())
    store.write_parquet(pa.table({"path": [p for p, _ in skipped], "reason": [r for _, r in skipped]}, schema=store.SKIPPED_SCHEMA), files["skipped"])
    manifest = {
        "version": v,
        "created_at": previous.manifest.get("created_at") if previous else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "encoder": {"fingerprint": encoder.fingerprint(), "dim": encoder.dim, "config": json.loads(encoder.config.to_json())},
        "index": spec.to_dict(),
        "counts": {"images": int(len(meta)), "skipped": len(skipped), "max_id": int(meta["id"].to_numpy().max()) if len(meta) else -1},
        **extra,
    }
    return store.commit(root, files, manifest, previous)

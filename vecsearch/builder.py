"""The build pipeline: scan → train encoder → encode batches (resumable) → index → calibrate → commit.

Encoded batches are written as Parquet chunks under ``<index>/.build/`` as they finish, so a build
that is killed and started again with the same sources only encodes what is missing. Ids are the
positions of the files in scan order, which makes the result independent of how often the build
was interrupted or in which order workers finished.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from . import calibration as calib
from . import executors, rerank, store
from . import images as imgs
from . import index as faiss_index
from . import vectors as vt
from .edits import CopyPlan, encode_copies
from .encoder import EncodedFiles, Encoder, EncoderConfig, example_images

log = logging.getLogger(__name__)

CALIBRATION_SAMPLE = 200
CALIBRATION_K = 10
COPY_BATCH = 8  # calibration sources per executor task
COPIES = "calibration_copies"  # build chunks' column of the copies made while encoding
#: A hit closer to a source than this quantile of its edited copies counts as a copy too, not as a
#: non-match (chosen on UKBench/Holidays reliability: 0.5 → ECE 0.13/0.04, 0.8 → 0.05/0.03).
EXCLUDE_QUANTILE = 0.8


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
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=True if quiet else None,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )


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
        vt.write(table, self.path / f"chunk-{number:06d}.parquet")

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


def encode_to_chunks(
    work: WorkDir,
    encoder: Encoder,
    paths: Sequence[str],
    *,
    workers: int | None,
    scheduler: str | None,
    batch_size: int,
    quiet: bool,
    copies: CopyPlan | None = None,
) -> None:
    """Encode every path not yet in a finished chunk, writing one chunk per batch as it completes
    (with the calibration copies ``copies`` asks for)."""
    done = work.done_paths()
    first = len(work.chunks()) and max(int(c.stem.split("-")[1]) for c in work.chunks()) + 1
    todo = sum(1 for p in paths if p not in done)
    with progress(len(paths), "encode", quiet) as bar:
        bar.update(len(paths) - todo)
        tasks = _batches(paths, done, batch_size, first)
        for number, result in executors.encode(encoder, tasks, workers, scheduler, copies):
            work.write_chunk(number, _chunk(result, encoder))
            bar.update(len(result.infos) + len(result.failures))


def _chunk(result: EncodedFiles, encoder: Encoder) -> pa.Table:
    """A batch's vector table, plus its calibration copies (a list of vectors, null for most rows)."""
    t = vt.table(result, encoder)
    if not result.copies:
        return t
    made = [result.copies.get(p) for p in t["path"].to_pylist()]
    offsets = np.r_[0, np.cumsum([0 if m is None else len(m) for m in made])].astype(np.int32)
    flat = np.concatenate([m for m in made if m is not None]).astype(np.float32).ravel()
    values = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), encoder.dim)
    return t.append_column(
        COPIES, pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array([m is None for m in made]))
    )


def _made_copies(files: Sequence[Path], ids_of: dict[str, int]) -> dict[int, np.ndarray]:
    """id → vectors of the calibration copies that the encode stage made, from its chunks."""
    out: dict[int, np.ndarray] = {}
    for f in files:
        pf = pq.ParquetFile(f)
        if COPIES not in pf.schema_arrow.names:
            continue
        t = pf.read(columns=["path", COPIES])
        col = t[COPIES].combine_chunks()
        for i in np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False)):
            copies = col[int(i)].values
            out[ids_of[t["path"][int(i)].as_py()]] = copies.flatten().to_numpy().reshape(len(copies), -1)
    return out


class NoImagesError(ValueError):
    """Nothing to index: the sources hold no image, or none could be read."""


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
    if sources is None:
        return []
    if isinstance(sources, (str, os.PathLike)):
        return [os.fspath(sources)]
    return [os.fspath(s) for s in sources]


def train_encoder(
    paths: Sequence[str], config: EncoderConfig, quiet: bool, workers: int | None = 0, scheduler=None
) -> Encoder:
    """Fit an encoder on a seeded random sample of ``config.train_images`` of the paths.

    Feature extraction, most of the cost, runs on the executor like encoding does.
    """
    rng = np.random.default_rng(config.seed)
    sample = [
        paths[i] for i in sorted(rng.choice(len(paths), min(config.train_images, len(paths)), replace=False))
    ]
    if len(sample) < config.min_train_views:  # small: the topped-up path needs pixels, and is quick
        with progress(len(sample), "train", quiet) as bar:
            return Encoder.fit(sample, config, progress=bar.update)
    feats: dict[int, list] = {}
    tasks = ((i, sample[s : s + 32]) for i, s in enumerate(range(0, len(sample), 32)))
    with progress(len(sample), "train", quiet) as bar:
        for number, f in executors.run(
            executors.extract, config, tasks, workers, scheduler, on_crash=lambda p: []
        ):
            feats[number] = f
            bar.update(min(32, len(sample) - 32 * number))
    return Encoder.fit_features([f for k in sorted(feats) for f in feats[k]], config)


def _vector_files(vectors) -> list[Path]:
    """Parquet vector files: given one by one, or as folders of ``*.parquet`` parts (as Dask/Spark write)."""
    out: list[Path] = []
    for v in _as_list(vectors):
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


def _metadata_rows(t: pa.Table, ids: np.ndarray, now: int) -> pa.Table:
    cols = {"id": pa.array(ids, pa.int64()), "path": t["path"]}
    for name, typ in vt.FACTS:
        cols[name] = t[name].cast(typ) if name in t.column_names else pa.nulls(len(t), typ)
    cols["added_at"] = pa.array([now] * len(t), pa.timestamp("s", tz="UTC"))
    return pa.table(cols, schema=store.METADATA_SCHEMA)


def add_to_index(
    index, files: Sequence[Path], ids_of: dict[str, int], quiet: bool, exact: np.ndarray | None = None
) -> pa.Table:
    """Add every good row of the vector files under its id (and to the re-ranking rows ``exact``,
    if any); returns their metadata rows."""
    now = int(time.time())
    parts = [store.METADATA_SCHEMA.empty_table()]
    with progress(vt.count_rows(files), "index", quiet) as bar:
        for t in vt.batches(files):
            if len(t):
                ids = np.fromiter((ids_of[p] for p in t["path"].to_pylist()), np.int64, len(t))
                v = vt.vectors_of(t)
                faiss_index.add(index, v, ids)
                if exact is not None:
                    exact[ids] = v
                parts.append(_metadata_rows(t, ids, now))
            bar.update(len(t))
    if exact is not None:
        exact.flush()
    return pa.concat_tables(parts).sort_by("id")


def _sample(files: Sequence[Path], n_rows: int, n: int, seed: int = 0) -> np.ndarray:
    """A uniform random sample of n of the n_rows good vectors of the files, in one streaming pass."""
    want = np.sort(np.random.default_rng(seed).choice(n_rows, min(n, n_rows), replace=False))
    parts, seen = [], 0
    for t in vt.batches(files, ["path", "vector", "error"]):
        lo, hi = np.searchsorted(want, [seen, seen + len(t)])
        if hi > lo:
            parts.append(vt.vectors_of(t)[want[lo:hi] - seen])
        seen += len(t)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def fill_index(
    files: Sequence[Path],
    ids_of: dict[str, int],
    d: int,
    memory_budget: int | None,
    quiet: bool,
    rerank_file: Path,
):
    """Choose, train, fill and tune a FAISS index from vector files; returns (index, spec, metadata,
    re-ranking vectors or None). A PQ index gets its re-ranking rows written to ``rerank_file``."""
    n = sum(len(t) for t in vt.batches(files, ["path", "error"]))  # rows with no error have a vector
    spec = faiss_index.choose(n, d, memory_budget)
    train = _sample(files, n, max(faiss_index.train_size(spec), 1000))
    index = faiss_index.create(spec, d, train[: faiss_index.train_size(spec)])
    rows = rerank.create(rerank_file, max(ids_of.values(), default=-1) + 1, d) if spec.rerank else None
    meta = add_to_index(index, files, ids_of, quiet, rows)
    exact = rerank.Vectors(rerank_file) if spec.rerank else None
    if not spec.exact and index.ntotal:
        queries = train[:500]
        positions = faiss_index.exact_neighbours(
            queries, (vt.vectors_of(t) for t in vt.batches(files, ["vector", "error"]))
        )
        order = np.concatenate(
            [
                np.fromiter((ids_of[p] for p in t["path"].to_pylist()), np.int64)
                for t in vt.batches(files, ["path", "vector", "error"])
            ]
        )
        truth = np.where(positions >= 0, order[np.maximum(positions, 0)], -1)
        spec.nprobe, spec.recall_at_10 = faiss_index.tune_nprobe(index, queries, truth, exact=exact)
        faiss_index.set_nprobe(index, spec.nprobe)
        if exact is not None:
            spec.rerank = exact.factor
    spec.trained_on = n
    return index, spec, meta, exact


def _copies_per_source(sources: int) -> int:
    """Edited copies per calibration source: enough for about 100 positives, 1 to 10 each."""
    return max(1, min(10, -(-100 // max(1, sources))))


def copy_plan(n_paths: int, seed: int = 0) -> CopyPlan:
    """The calibration sources a build of ``n_paths`` files picks while encoding: about
    CALIBRATION_SAMPLE of them."""
    return CopyPlan(
        CALIBRATION_SAMPLE / max(1, n_paths), _copies_per_source(min(n_paths, CALIBRATION_SAMPLE)), seed
    )


def fit_calibration(
    encoder: Encoder,
    index,
    items: Sequence[tuple[int, str]],
    quiet: bool,
    seed: int = 0,
    workers: int | None = 0,
    scheduler=None,
    exact: rerank.Vectors | None = None,
    copies: dict[int, np.ndarray] | None = None,
) -> calib.Calibration:
    """Query the index with edited copies of sampled indexed images and fit distance → probability.

    ``items`` are (id, path) of indexed images. The source of a copy is a true match; the other top
    hits are not, unless closer to the source than most of its edited copies. ``copies`` (id →
    vectors) are the copies the encode stage made; when fewer than half of CALIBRATION_SAMPLE come
    that way, random indexed images are added, their copies encoded on the executor. The sources'
    vectors come from the index. Where the images cannot be read from here (vectors made on
    another machine), the example photos shipped with vecsearch stand in as sources.
    """
    ids = sorted(copies or {})
    edited = [copies[i] for i in ids] if copies else []
    if len(ids) < CALIBRATION_SAMPLE // 2:
        have = set(ids)
        order = list(
            itertools.islice(
                (i for i in np.random.default_rng(seed).permutation(len(items)) if items[i][0] not in have),
                5 * CALIBRATION_SAMPLE,
            )
        )
        work = functools.partial(
            encode_copies, copies=_copies_per_source(min(len(items), CALIBRATION_SAMPLE)), seed=seed
        )
        tried = 0
        with progress(CALIBRATION_SAMPLE, "calibrate", quiet) as bar:
            bar.update(len(ids))
            # Random indexed images until enough can be read here (vectors may come from elsewhere).
            while len(ids) < CALIBRATION_SAMPLE and tried < len(order):
                chosen = order[tried : tried + CALIBRATION_SAMPLE - len(ids)]
                tried += len(chosen)
                tasks = [
                    (n, [items[i][1] for i in chosen[s : s + COPY_BATCH]])
                    for n, s in enumerate(range(0, len(chosen), COPY_BATCH))
                ]
                on = dict(
                    executors.run(
                        work,
                        encoder,
                        tasks,
                        workers if len(tasks) > 1 else 0,
                        scheduler,
                        on_crash=lambda path: [None],
                    )
                )
                for i, v in zip(chosen, (v for n, _ in tasks for v in on[n])):
                    if v is not None:
                        ids.append(items[i][0])
                        edited.append(v)
                        bar.update(1)
    v_orig = faiss_index.reconstruct(index, ids, exact) if ids else np.zeros((0, encoder.dim), np.float32)
    if len(ids) < 10:
        examples = example_images()
        v_orig = np.vstack([v_orig, encoder.encode(examples)])
        edited += encode_copies(encoder, examples, _copies_per_source(len(ids) + len(examples)), seed)
        ids += [-1] * len(examples)
    owner = np.repeat(np.arange(len(ids)), [len(v) for v in edited])
    v_edit = np.vstack(edited)
    positive = np.sum((v_edit - v_orig[owner]) ** 2, axis=1)
    # Images of the collection as close to a source as most of its own edited copies are copies of
    # it (a collection with duplicates must not teach that duplicates are non-matches).
    radius = float(np.quantile(positive, EXCLUDE_QUANTILE))
    d_orig, i_orig = faiss_index.search(index, v_orig, CALIBRATION_K + 1, exact)
    same = [
        {sid} | {int(i) for d, i in zip(d_orig[o], i_orig[o]) if i >= 0 and d <= radius}
        for o, sid in enumerate(ids)
    ]
    dist, hit = faiss_index.search(index, v_edit, CALIBRATION_K + 1, exact)
    negative = [
        d
        for q, o in enumerate(owner)
        for d in [d for d, i in zip(dist[q], hit[q]) if i >= 0 and int(i) not in same[o]][:CALIBRATION_K]
    ]
    if len(negative) < 20:  # a tiny collection: unrelated pairs among the example photos help out
        ex = encoder.encode(example_images())
        negative += [float(np.sum((a - b) ** 2)) for i, a in enumerate(ex) for b in ex[i + 1 :]]
    return calib.fit(positive, np.array(negative))


def _next_file(root: Path, previous: store.Version | None, role: str, suffix: str) -> Path:
    return root / store.versioned_name(role, previous.number + 1 if previous else 1, suffix)


def commit_version(
    root: Path,
    previous: store.Version | None,
    encoder: Encoder,
    faiss_idx,
    spec: faiss_index.IndexSpec,
    meta: pa.Table,
    cal: calib.Calibration,
    skipped: list[tuple[str, str]],
    rerank_file: Path | None = None,
    **extra,
) -> store.Version:
    """Write the files of a new version under versioned names and switch the manifest to them.

    The encoder file of the previous version is reused when the encoder did not change; the
    re-ranking vectors of a PQ index are in ``rerank_file``, already written (or the previous one's).
    """
    v = previous.number + 1 if previous else 1
    name = lambda role, suffix: _next_file(root, previous, role, suffix)  # noqa: E731
    same_encoder = (
        previous is not None
        and previous.manifest.get("encoder", {}).get("fingerprint") == encoder.fingerprint()
    )
    files = {
        "encoder": previous.file("encoder") if same_encoder else encoder.save(name("encoder", ".npz")),
        "index": name("index", ".faiss"),
        "metadata": name("metadata", ".parquet"),
        "calibration": name("calibration", ".json"),
        "skipped": name("skipped", ".parquet"),
        **({"rerank": rerank_file} if rerank_file is not None else {}),
    }
    faiss_index.save(faiss_idx, files["index"])
    store.write_parquet(meta, files["metadata"])
    store.atomic_write_bytes(files["calibration"], cal.to_json().encode())
    store.write_parquet(
        pa.table(
            {"path": [p for p, _ in skipped], "reason": [r for _, r in skipped]}, schema=store.SKIPPED_SCHEMA
        ),
        files["skipped"],
    )
    ids = meta["id"].to_numpy()
    manifest = {
        **(previous.manifest if previous else {}),
        "version": v,
        "created_at": previous.manifest.get("created_at")
        if previous
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "encoder": {
            "fingerprint": encoder.fingerprint(),
            "dim": encoder.dim,
            "config": json.loads(encoder.config.to_json()),
        },
        "index": spec.to_dict(),
        "counts": {
            "images": len(meta),
            "skipped": len(skipped),
            "max_id": int(
                max(
                    ids.max() if len(ids) else -1, (previous.manifest["counts"]["max_id"] if previous else -1)
                )
            ),
        },
        "libraries": store.library_versions(),
        **extra,
    }
    return store.commit(root, files, manifest, previous)


def _open(root: Path, report: BuildReport):
    from .search import open_index

    opened = open_index(root)
    opened.last_build = report
    return opened


def _skipped_of(files: Sequence[Path]) -> list[tuple[str, str]]:
    out = []
    for t in vt.batches(files, ["path", "error"], ok_only=False):
        if "error" in t.column_names:
            out += [(p, e) for p, e in zip(t["path"].to_pylist(), t["error"].to_pylist()) if e is not None]
    return out


def _vector_paths(files: Sequence[Path]) -> list[str]:
    paths = [p for t in vt.batches(files, ["path", "vector", "error"]) for p in t["path"].to_pylist()]
    if len(set(paths)) != len(paths):
        raise ValueError(f"{files[0]}: the same path appears more than once")
    return paths


def _from_vectors(
    files: Sequence[Path], enc: Encoder
) -> tuple[Sequence[Path], list[str], list[tuple[str, str]]]:
    """Vector files as build input: (files, their paths in order, their failed rows); checked first."""
    vt.check_files(files, enc)
    return files, _vector_paths(files), _skipped_of(files)


def _scan_some(sources, quiet: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """``scan``, refusing sources that hold no image at all."""
    paths, skipped = scan(_as_list(sources), quiet)
    if not paths:
        why = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise NoImagesError(f"no images found in {', '.join(_as_list(sources))}{f' ({why})' if why else ''}")
    return paths, skipped


def _resolve_encoder(
    encoder, previous: store.Version | None, retrain: bool, vector_files: Sequence[Path]
) -> Encoder | None:
    if isinstance(encoder, (str, os.PathLike)):
        return Encoder.load(encoder)
    if encoder is not None:
        return encoder
    if previous is not None and not retrain:
        return Encoder.load(previous.file("encoder"))
    if vector_files:
        raise ValueError(
            "building from --vectors needs the encoder that made them: give --encoder (an encoder file or index directory)"
        )
    return None


def build(
    sources: Sequence[str | os.PathLike] | str | os.PathLike | None,
    index: str | os.PathLike,
    *,
    vectors: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
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

    Or, with ``vectors`` (Parquet files written by ``embed`` or any tool, columns path and vector),
    index precomputed vectors; ``encoder`` must then be the encoder that made them. The encoder is,
    in order: the one given; the existing index's (unless ``retrain``); or one trained on a sample
    of the sources. ``workers=0`` encodes in this process, ``None`` uses every core; ``scheduler``
    (``tcp://host:8786`` or a ``distributed.Client``) encodes on a Dask cluster. Started again after
    an interruption with the same sources, it resumes. Returns the opened ``Index``.
    """
    t0 = time.time()
    root = Path(index).expanduser()
    budget = faiss_index.parse_bytes(memory_budget)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    vector_files = _vector_files(vectors) if vectors is not None else []
    if not vector_files and not sources:
        raise ValueError("give the images to index (SOURCE…) or precomputed --vectors")
    with store.writer_lock(root):
        previous = store.read_manifest(root) if (root / store.MANIFEST).exists() else None
        enc = _resolve_encoder(encoder, previous, retrain, vector_files)
        work = None
        if vector_files:
            files, paths, skipped = _from_vectors(vector_files, enc)
        else:
            paths, skipped = _scan_some(sources, quiet)
            cfg = config or EncoderConfig()
            work = WorkDir(
                root, _key("build", paths, enc.fingerprint() if enc is not None else f"train:{cfg.to_json()}")
            )
            if enc is None:
                enc = (
                    Encoder.load(work.encoder_path)
                    if work.encoder_path.exists()
                    else train_encoder(paths, cfg, quiet, workers, scheduler)
                )
            if not work.encoder_path.exists():
                enc.save(work.encoder_path)
            encode_to_chunks(
                work,
                enc,
                paths,
                workers=workers,
                scheduler=scheduler,
                batch_size=batch_size,
                quiet=quiet,
                copies=copy_plan(len(paths)),
            )
            files = work.chunks()
            skipped += _skipped_of(files)
        ids_of = {p: i for i, p in enumerate(paths)}
        faiss_idx, spec, meta, exact = fill_index(
            files, ids_of, enc.dim, budget, quiet, _next_file(root, previous, "rerank", ".npy")
        )
        if not len(meta):
            why = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
            raise NoImagesError(f"none of the {len(paths)} files could be read as an image ({why})")
        cal = fit_calibration(
            enc,
            faiss_idx,
            list(zip(meta["id"].to_pylist(), meta["path"].to_pylist())),
            quiet,
            workers=workers,
            scheduler=scheduler,
            exact=exact,
            copies=_made_copies(files, ids_of),
        )
        trained = (
            previous.manifest.get("encoder_trained_on")
            if previous and enc.fingerprint() == previous.manifest["encoder"]["fingerprint"]
            else None
        )
        commit_version(
            root,
            previous,
            enc,
            faiss_idx,
            spec,
            meta,
            cal,
            skipped,
            exact.path if exact else None,
            encoder_trained_on=trained or len(paths),
        )
        if work:
            work.remove()
    return _open(root, BuildReport(len(meta), skipped, time.time() - t0))


def _changed(path: str, row: dict | None) -> bool:
    """New, or its size or modification time differ from what the index recorded."""
    if row is None:
        return True
    try:
        st = os.stat(path)
    except OSError:
        return True  # let the encoder report why it cannot be read
    return st.st_size != row["bytes"] or abs(st.st_mtime - row["mtime"]) > 1e-6


def _load_for_update(previous: store.Version):
    try:
        return faiss_index.load(previous.file("index"), mmap=False)
    except RuntimeError as e:
        raise store.IndexError_(
            f"{previous.file('index')}: damaged FAISS index ({str(e).splitlines()[0][:200]})"
        ) from None


def add(
    sources: Sequence[str | os.PathLike] | str | os.PathLike | None,
    index: str | os.PathLike,
    *,
    vectors: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    batch_size: int = 64,
    quiet: bool = False,
):
    """Add new and changed images (or precomputed ``vectors``) to an existing index, as one new version.

    Files whose path, size and modification time match the index are skipped; changed ones are
    re-encoded and replace their old entry. The index's own encoder is used, so vectors stay
    comparable. Like ``build``, an interrupted add resumes when run again.
    """
    t0 = time.time()
    root = Path(index).expanduser()
    vector_files = _vector_files(vectors) if vectors is not None else []
    with store.writer_lock(root):
        previous = store.read_manifest(root)
        enc = Encoder.load(previous.file("encoder"))
        old = store.read_metadata(previous.file("metadata"))
        old_rows = {
            p: {"id": i, "bytes": b, "mtime": m}
            for p, i, b, m in zip(*(old[c].to_pylist() for c in ("path", "id", "bytes", "mtime")))
        }
        work = None
        if vector_files:
            files, todo, skipped = _from_vectors(vector_files, enc)
        else:
            paths, skipped = _scan_some(sources, quiet)
            todo = [p for p in paths if _changed(p, old_rows.get(p))]
            work = WorkDir(root, _key("add", todo, f"{enc.fingerprint()}:{previous.number}"))
            if not work.encoder_path.exists():
                enc.save(work.encoder_path)
            encode_to_chunks(
                work, enc, todo, workers=workers, scheduler=scheduler, batch_size=batch_size, quiet=quiet
            )
            files = work.chunks()
            skipped += _skipped_of(files)
        faiss_idx = _load_for_update(previous)
        replaced = [old_rows[p]["id"] for p in todo if p in old_rows]
        faiss_index.remove(faiss_idx, replaced)
        first = int(previous.manifest["counts"]["max_id"]) + 1
        rerank_file, rows = None, None
        if "rerank" in previous.manifest["files"]:  # a PQ index: re-ranking rows for the new ids too
            rerank_file = _next_file(root, previous, "rerank", ".npy")
            rows = rerank.create(rerank_file, first + len(todo), enc.dim, previous.file("rerank"))
        new_meta = add_to_index(faiss_idx, files, {p: first + i for i, p in enumerate(todo)}, quiet, rows)
        keep_old = old.filter(pa.compute.invert(pa.compute.is_in(old["id"], pa.array(replaced, pa.int64()))))
        meta = pa.concat_tables([keep_old, new_meta]).sort_by("id")
        retried = set(todo)
        prev_skipped = pq.read_table(previous.file("skipped"))
        skipped = [
            (p, r)
            for p, r in zip(prev_skipped["path"].to_pylist(), prev_skipped["reason"].to_pylist())
            if p not in retried
        ] + skipped
        spec = faiss_index.IndexSpec(**previous.manifest["index"])
        cal = calib.Calibration.load(previous.file("calibration"))
        commit_version(root, previous, enc, faiss_idx, spec, meta, cal, skipped, rerank_file)
        if work:
            work.remove()
    return _open(root, BuildReport(len(new_meta), skipped, time.time() - t0))


def remove(
    paths: Sequence[str | os.PathLike] | str | os.PathLike | None,
    index: str | os.PathLike,
    *,
    missing: bool = False,
    quiet: bool = False,
) -> int:
    """Remove images from an index by path (a folder removes everything under it), as one new version.

    With ``missing``, also every indexed file that no longer exists. Returns how many were removed.
    """
    root = Path(index).expanduser()
    targets = [os.path.abspath(os.path.expanduser(p)) for p in _as_list(paths)]
    if not targets and not missing:
        raise ValueError("give the PATHs to remove, or --missing to drop files that no longer exist")
    with store.writer_lock(root):
        previous = store.read_manifest(root)
        meta = store.read_metadata(previous.file("metadata"))
        exact = set(targets)
        prefixes = tuple(t.rstrip(os.sep) + os.sep for t in targets)
        gone = [
            i
            for i, p in zip(meta["id"].to_pylist(), meta["path"].to_pylist())
            if p in exact or (prefixes and p.startswith(prefixes)) or (missing and not os.path.lexists(p))
        ]
        if not gone:
            return 0
        faiss_idx = _load_for_update(previous)
        faiss_index.remove(faiss_idx, gone)
        meta = meta.filter(pa.compute.invert(pa.compute.is_in(meta["id"], pa.array(gone, pa.int64()))))
        prev_skipped = pq.read_table(previous.file("skipped"))
        skipped = [
            (p, r)
            for p, r in zip(prev_skipped["path"].to_pylist(), prev_skipped["reason"].to_pylist())
            if p not in exact and not (prefixes and p.startswith(prefixes))
        ]
        commit_version(
            root,
            previous,
            Encoder.load(previous.file("encoder")),
            faiss_idx,
            faiss_index.IndexSpec(**previous.manifest["index"]),
            meta,
            calib.Calibration.load(previous.file("calibration")),
            skipped,
            previous.file("rerank") if "rerank" in previous.manifest["files"] else None,
        )
    return len(gone)

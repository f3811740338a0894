"""The steps build, add and remove share: encode (resumable), index (choose, train, fill, tune) and
commit (write a version's files and switch the manifest).

The encode step runs batches on the executor and keeps each finished one as a chunk under
``<index>/.build/`` (``workdir.py``), so a job killed and started again with the same inputs
encodes only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from . import ivf, pathnames, rerank, store
from .calibration import Calibration
from .encoder import Derive, Encoder
from .encoding import encode_batches
from .files import write_bytes
from .manifest import FORMAT, Counts, EncoderEntry, IndexSpec, Manifest, Version
from .stages import stage
from .vectors import FACTS, VectorFiles, chunk, vectors_of, write_parquet
from .workdir import WorkDir

TUNING_QUERIES = 500


@dataclass
class Executor:
    """Where a job encodes: ``workers`` processes (0: here, None: one per core) or a Dask
    ``scheduler``, in batches of ``batch_size`` files."""

    workers: int | None = None
    scheduler: object = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


@dataclass
class Job:
    """One build, add or remove: the index directory, the version it starts from (None for a first
    build), where it encodes, and whether it shows progress."""

    root: Path
    previous: Version | None
    run: Executor
    quiet: bool

    def next_file(self, role: str, suffix: str) -> Path:
        return store.next_file(self.root, self.previous, role, suffix)


@dataclass
class NewVersion:
    """What a job commits. The re-ranking vectors of a PQ index are already in ``rerank_file`` (or
    it is the previous version's, unchanged)."""

    encoder: Encoder
    faiss_index: object
    spec: IndexSpec
    metadata: pa.Table
    calibration: Calibration
    skipped: list[tuple[str, str]]
    rerank_file: Path | None = None
    encoder_trained_on: int | None = None  # None: as before


def encode(
    job: Job,
    work: WorkDir,
    encoder: Encoder,
    paths: Sequence[str],
    first_id: int,
    derive: Derive | None = None,
) -> VectorFiles:
    """Encode every path no finished chunk holds (the path at position i gets id first_id + i),
    writing one chunk per batch as it completes; returns all the chunks."""
    if not work.encoder_path.exists():
        encoder.save(work.encoder_path)
    done = work.done_paths()
    pending = [(first_id + i, p) for i, p in enumerate(paths) if p not in done]
    size = job.run.batch_size
    in_flight: dict[int, dict[str, int]] = {}  # task number → its paths' ids

    def tasks():
        for number, s in enumerate(range(0, len(pending), size), work.next_number()):
            in_flight[number] = {p: i for i, p in pending[s : s + size]}
            yield number, list(in_flight[number])

    with stage("encode", len(paths), quiet=job.quiet) as st:
        st.resume(len(paths) - len(pending))
        for number, result in encode_batches(encoder, tasks(), job.run.workers, job.run.scheduler, derive):
            work.write_chunk(number, chunk(result, encoder, in_flight.pop(number)))
            st.update(len(result.infos) + len(result.failures))
    return VectorFiles(work.chunks())


def index(job: Job, files: VectorFiles, n: int, n_ids: int, d: int, budget: int | None) -> tuple:
    """Choose, train, fill and tune a FAISS index for the ``n`` good vectors of ``files`` (ids below
    ``n_ids``); returns (index, spec, metadata, re-ranking rows or None)."""
    spec = ivf.choose(n, d, budget)
    sample = None
    if spec.exhaustive:
        faiss_index = ivf.create(spec, d, None)
    else:
        with stage("train IVF", quiet=job.quiet, unit="vectors") as st:
            sample = files.sample(n, max(ivf.train_size(spec), 1000))
            faiss_index = ivf.create(spec, d, sample[: ivf.train_size(spec)])
            st.update(ivf.train_size(spec))
    rerank_file = job.next_file("rerank", ".npy")
    copy_to = rerank.create(rerank_file, n_ids, d) if spec.rerank else None
    truth = ivf.ExactNeighbours(sample[:TUNING_QUERIES]) if sample is not None else None
    meta = fill(job, faiss_index, files, n, copy_to, truth)
    rows = rerank.Vectors(rerank_file) if spec.rerank else None
    if truth is not None and faiss_index.ntotal:
        queries = sample[:TUNING_QUERIES]
        spec.nprobe, spec.recall_at_10 = ivf.tune_nprobe(faiss_index, queries, truth.ids(), rows=rows)
        ivf.set_nprobe(faiss_index, spec.nprobe)
        if rows is not None:
            spec.rerank = rows.factor
    spec.trained_on = n
    return faiss_index, spec, meta, rows


def fill(job: Job, faiss_index, files: VectorFiles, n: int, copy_to=None, truth=None) -> pa.Table:
    """Add every good row of the vector files under its id (see ``ivf.fill``); their metadata rows."""
    added_at = int(time.time())
    parts = []
    with stage("index", n, quiet=job.quiet) as st:

        def batches():
            for t in files.batches(["path", pathnames.BYTES, *(name for name, _ in FACTS)]):
                if len(t):
                    parts.append(store.metadata_rows(t, added_at))
                    st.update(len(t))
                    yield t["id"].to_numpy(), vectors_of(t)

        ivf.fill(faiss_index, batches(), copy_to, truth)
    return store.join_metadata(parts)


def commit(job: Job, new: NewVersion) -> Version:
    """Write the files of a new version under versioned names and switch the manifest to them; the
    encoder file of the previous version is reused when the encoder did not change."""
    before = job.previous.manifest if job.previous else Manifest()
    fingerprint = new.encoder.fingerprint()
    with stage("commit", quiet=job.quiet) as st:
        same_encoder = job.previous is not None and before.encoder.fingerprint == fingerprint
        files = {
            "encoder": job.previous.file("encoder")
            if same_encoder
            else new.encoder.save(job.next_file("encoder", ".npz")),
            "index": job.next_file("index", ".faiss"),
            "metadata": job.next_file("metadata", ".parquet"),
            "calibration": job.next_file("calibration", ".json"),
            "skipped": job.next_file("skipped", ".parquet"),
            **({"rerank": new.rerank_file} if new.rerank_file is not None else {}),
        }
        ivf.save(new.faiss_index, files["index"])
        write_parquet(new.metadata, files["metadata"])
        write_bytes(files["calibration"], new.calibration.to_json().encode())
        write_parquet(store.skipped_table(new.skipped), files["skipped"])
        ids = new.metadata["id"].to_numpy()
        max_id = int(max(ids.max() if len(ids) else -1, before.counts.max_id))
        manifest = dataclasses.replace(
            before,
            version=before.version + 1,
            created_at=before.created_at if job.previous else store.now(),
            encoder=EncoderEntry(fingerprint, new.encoder.dim, json.loads(new.encoder.config.to_json())),
            index=new.spec,
            counts=Counts(len(new.metadata), len(new.skipped), max_id),
            libraries=store.library_versions(),
            encoder_trained_on=new.encoder_trained_on or before.encoder_trained_on,
            format=FORMAT if new.calibration.relative else before.format,
        )
        version = store.commit(job.root, files, manifest, job.previous)
        st.update(len(new.metadata))
    return version


def commit_calibration(job: Job, calibration: Calibration) -> Version:
    """A new version that differs from the previous one only in its calibration (every other file
    is shared with it)."""
    before = job.previous.manifest
    with stage("commit", quiet=job.quiet) as st:
        files = {role: job.previous.file(role) for role in before.files if role != "calibration"}
        files["calibration"] = job.next_file("calibration", ".json")
        write_bytes(files["calibration"], calibration.to_json().encode())
        manifest = dataclasses.replace(
            before,
            version=before.version + 1,
            libraries=store.library_versions(),
            format=FORMAT if calibration.relative else before.format,
        )
        version = store.commit(job.root, files, manifest, job.previous)
        st.update(before.counts.images)
    return version

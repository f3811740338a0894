"""The build pipeline: build, add and remove, each committing one new version of an index directory.

    build:   scan → train → encode (resumable chunks) → index → calibrate → commit
    add:     scan → encode the new and changed files → index, into the current one → commit
    remove:  index, without the removed ids → commit

The three share the steps of ``steps.py``: one encode step (resumable) and one commit step. Ids
are scan positions (for an add, counted on from the largest id ever given), so the result does not
depend on interruptions or on the order in which workers finished.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from . import ivf, pathnames, rerank, steps, store
from .calibrate import copy_plan, fit_calibration, fit_labels, read_labels
from .calibration import Calibration
from .encoder import Encoder, EncoderConfig
from .encoding import train_encoder
from .manifest import MANIFEST, IndexDirError, Version, read_version
from .search import Index, encoder_outgrown, open_index
from .sizes import parse_bytes
from .sources import NoImagesError, Sources, as_list, scan_images, vector_files
from .vectors import Inventory, VectorFiles, check_files
from .workdir import WorkDir, key

log = logging.getLogger(__name__)


def n_images(n: int) -> str:
    return f"{n} image{'' if n == 1 else 's'}"


@dataclass
class BuildReport:
    """What one build or add did."""

    indexed: int = 0  # images encoded and indexed (for an add: the new and the updated ones)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # the files this job could not index
    seconds: float = 0.0
    updated: int = 0  # of those indexed, files whose older entry they replaced
    committed: bool = True  # False: the job found nothing to change and made no new version

    def reasons(self) -> str:
        """The skipped files counted by reason: "2 empty file, 1 not a recognised image format"."""
        counts: dict[str, int] = {}
        for _, r in self.skipped:
            why = r.split(":")[0].split("(")[0].strip()
            counts[why] = counts.get(why, 0) + 1
        return ", ".join(f"{n} {r}" for r, n in sorted(counts.items(), key=lambda x: -x[1]))

    def summary(self) -> str:
        why = self.reasons()
        rate = f" ({self.indexed / self.seconds:.1f} images/s)" if self.indexed and self.seconds else ""
        return (
            f"indexed {n_images(self.indexed)}, skipped {len(self.skipped)}{f' ({why})' if why else ''} "
            f"in {self.seconds:.1f}s{rate}"
        )


def build(
    sources: Sources,
    index: str | os.PathLike,
    *,
    vectors: Sources = None,
    encoder: str | os.PathLike | Encoder | None = None,
    retrain: bool = False,
    keep_encoder: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    batch_size: int = 64,
    memory_budget: str | int | None = None,
    config: EncoderConfig | None = None,
    quiet: bool = False,
) -> Index:
    """Index the images of ``sources`` (folders, files, globs, .txt lists) into the directory ``index``.

    Or, with ``vectors`` (Parquet files written by ``embed`` or any tool, columns path and vector),
    index precomputed vectors; ``encoder`` must then be the encoder that made them. The encoder is,
    in order: the one given; the existing index's, unless ``retrain`` or unless it was trained on
    far fewer images than the collection now has (``keep_encoder`` keeps it even then); or one
    trained on a sample of the sources. ``workers=0`` encodes in this process, ``None`` uses every
    core; ``scheduler`` (``tcp://host:8786`` or a ``distributed.Client``) encodes on a Dask cluster.
    Started again after an interruption with the same sources, it resumes. Returns the opened
    ``Index``.
    """
    t0 = time.time()
    root = Path(index).expanduser()
    budget = parse_bytes(memory_budget)
    run = steps.Executor(workers, scheduler, batch_size)
    given = vector_files(vectors) if vectors is not None else []
    if not given and not as_list(sources):
        raise ValueError("give the images to index (SOURCE…) or precomputed --vectors")
    if retrain and keep_encoder:
        raise ValueError("retrain and keep_encoder contradict each other: give one of them")
    with store.writer_lock(root, create=True):
        previous = read_version(root) if (root / MANIFEST).exists() else None
        job = steps.Job(root, previous, run, quiet)
        if given:
            enc = _given_encoder(encoder)
            if enc is None:
                raise ValueError(
                    "building from --vectors needs the encoder that made them: "
                    "give --encoder (an encoder file or index directory)"
                )
            got = _vector_input(given, enc, first_id=0)
        else:
            paths, skipped = scan_images(sources, quiet)
            enc = _given_encoder(encoder) or _previous_encoder(previous, retrain, keep_encoder, len(paths))
            enc, got = _image_input(job, paths, skipped, enc, config or EncoderConfig())
        faiss_index, spec, meta, rows = steps.index(
            job, got.files, len(got.inventory), got.n_ids, enc.dim, budget
        )
        if not len(meta):
            why = "; ".join(f"{p}: {r}" for p, r in got.skipped[:3])
            raise NoImagesError(f"none of the {got.n_ids} files could be read as an image ({why})")
        items = list(zip(meta["id"].to_pylist(), pathnames.of(meta), meta["sha1"].to_pylist()))
        copies = got.inventory.derived
        cal = fit_calibration(
            enc,
            faiss_index,
            items,
            quiet,
            workers=workers,
            scheduler=scheduler,
            rerank_rows=rows,
            copies=copies,
        )
        same = previous is not None and previous.manifest.encoder.fingerprint == enc.fingerprint()
        trained = (previous.manifest.encoder_trained_on if same else None) or got.n_ids
        rows_file = rows.path if rows else None
        steps.commit(
            job, steps.NewVersion(enc, faiss_index, spec, meta, cal, got.skipped, rows_file, trained)
        )
        if got.work:
            got.work.remove()
    return _opened(root, BuildReport(len(meta), got.skipped, time.time() - t0))


def add(
    sources: Sources,
    index: str | os.PathLike,
    *,
    vectors: Sources = None,
    workers: int | None = None,
    scheduler: str | None = None,
    batch_size: int = 64,
    quiet: bool = False,
) -> Index:
    """Add new and changed images (or precomputed ``vectors``) to an existing index, as one new version.

    Files whose path, size and modification time match the index are skipped; changed ones are
    re-encoded and replace their old entry. The index's own encoder is used, so vectors stay
    comparable. Like ``build``, an interrupted add resumes when run again. An add that finds nothing
    new makes no new version (its report says ``committed=False``).
    """
    t0 = time.time()
    root = Path(index).expanduser()
    run = steps.Executor(workers, scheduler, batch_size)
    given = vector_files(vectors) if vectors is not None else []
    with store.writer_lock(root):
        previous = read_version(root)
        job = steps.Job(root, previous, run, quiet)
        enc = Encoder.load(previous.file("encoder"))
        old = store.read_metadata(previous.file("metadata"))
        old_ids = old["id"].to_numpy()
        first = max(previous.manifest.counts.max_id, int(old_ids.max()) if len(old_ids) else -1) + 1
        if given:
            got = _vector_input(given, enc, first)
            todo = got.inventory.paths
            if not todo and not got.skipped:
                return _opened(root, BuildReport(0, [], time.time() - t0, committed=False))
        else:
            paths, skipped = scan_images(sources, quiet)
            todo = _changed(paths, old)
            if not todo:
                return _opened(root, BuildReport(0, skipped, time.time() - t0, committed=False))
            work = WorkDir(root, key("add", todo, f"{enc.fingerprint()}:{previous.number}"))
            got = _Input(steps.encode(job, work, enc, todo, first), skipped, len(todo), work)
        faiss_index = _load_for_update(previous)
        replaced = _ids_of(old, todo)
        ivf.remove(faiss_index, replaced)
        rerank_file, copy_to = None, None
        if previous.has("rerank"):  # a PQ index: re-ranking rows for the new ids too
            rerank_file = job.next_file("rerank", ".npy")
            copy_to = rerank.create(rerank_file, first + len(todo), enc.dim, previous.file("rerank"))
        new_meta = steps.fill(job, faiss_index, got.files, len(got.inventory), copy_to)
        meta = store.join_metadata([_without(old, replaced), new_meta])
        retried = set(todo)
        before = [(p, r) for p, r in store.read_skipped(previous.file("skipped")) if p not in retried]
        cal = Calibration.load(previous.file("calibration"))
        spec = previous.manifest.index
        steps.commit(
            job, steps.NewVersion(enc, faiss_index, spec, meta, cal, before + got.skipped, rerank_file)
        )
        if got.work:
            got.work.remove()
    updated = len(set(_ids_of(old, pathnames.of(new_meta))))
    return _opened(root, BuildReport(len(new_meta), got.skipped, time.time() - t0, updated))


def remove(paths: Sources, index: str | os.PathLike, *, missing: bool = False, quiet: bool = False) -> int:
    """Remove images from an index by path (a folder removes everything under it), as one new version.

    With ``missing``, also every indexed file that no longer exists. Returns how many were removed;
    when that is none, no new version is made.
    """
    root = Path(index).expanduser()
    targets = {os.path.abspath(os.path.expanduser(p)) for p in as_list(paths)}
    if not targets and not missing:
        raise ValueError("give the PATHs to remove, or --missing to drop files that no longer exist")
    prefixes = tuple(t.rstrip(os.sep) + os.sep for t in targets)

    def chosen(p: str) -> bool:
        return p in targets or (bool(prefixes) and p.startswith(prefixes))

    with store.writer_lock(root):
        previous = read_version(root)
        meta = store.read_metadata(previous.file("metadata"))
        indexed = zip(meta["id"].to_pylist(), pathnames.of(meta))
        gone = [i for i, p in indexed if chosen(p) or (missing and not os.path.lexists(p))]
        if not gone:
            return 0
        faiss_index = _load_for_update(previous)
        ivf.remove(faiss_index, gone)
        skipped = [(p, r) for p, r in store.read_skipped(previous.file("skipped")) if not chosen(p)]
        enc = Encoder.load(previous.file("encoder"))
        cal = Calibration.load(previous.file("calibration"))
        rows_file = previous.file("rerank") if previous.has("rerank") else None
        spec = previous.manifest.index
        new = steps.NewVersion(enc, faiss_index, spec, _without(meta, gone), cal, skipped, rows_file)
        steps.commit(steps.Job(root, previous, steps.Executor(), quiet), new)
    return len(gone)


def recalibrate(index: str | os.PathLike, labels: str | os.PathLike, *, quiet: bool = False) -> Index:
    """Refit the index's calibration on a user's labels (``path,group`` or ``a,b,same``, see
    ``calibrate.read_labels``), as one new version: the percentage then means "the same thing" as
    the labels mean it. A file that cannot teach (unknown paths, one kind of pair only, too few
    pairs) is refused with ValueError, and nothing changes."""
    root = Path(index).expanduser()
    taught = read_labels(labels)
    with store.writer_lock(root):
        previous = read_version(root)
        cal = fit_labels(open_index(root), taught)
        steps.commit_calibration(steps.Job(root, previous, steps.Executor(), quiet), cal)
    return open_index(root)


@dataclass
class _Input:
    """The encoded input of a build or add: its vector files, what a pass over them found, the
    failures so far, and how many ids the job hands out."""

    files: VectorFiles
    skipped: list[tuple[str, str]]
    n_ids: int
    work: WorkDir | None = None
    inventory: Inventory = field(init=False)

    def __post_init__(self) -> None:
        self.inventory = self.files.inventory()
        self.skipped = self.skipped + self.inventory.skipped


def _image_input(
    job: steps.Job,
    paths: list[str],
    skipped: list[tuple[str, str]],
    enc: Encoder | None,
    config: EncoderConfig,
) -> tuple[Encoder, _Input]:
    """Train an encoder if there is none yet (or take the one an interrupted run trained), then
    encode, resumably."""
    made_by = enc.fingerprint() if enc is not None else f"train:{config.to_json()}"
    work = WorkDir(job.root, key("build", paths, made_by))
    if enc is None and work.encoder_path.exists():
        enc = Encoder.load(work.encoder_path)
    elif enc is None:
        enc = train_encoder(paths, config, job.quiet, job.run.workers, job.run.scheduler)
    files = steps.encode(job, work, enc, paths, 0, copy_plan(len(paths)))
    return enc, _Input(files, skipped, len(paths), work)


def _vector_input(files: list[Path], enc: Encoder, first_id: int) -> _Input:
    """Vector files as the input of a job, checked first."""
    check_files(files, enc)
    got = _Input(VectorFiles(files, first_id), [], 0)
    if len(set(got.inventory.paths)) != len(got.inventory):
        raise ValueError(f"{files[0]}: the same path appears more than once")
    got.n_ids = len(got.inventory)
    return got


# ---- helpers ---------------------------------------------------------------------------------


def _given_encoder(encoder: str | os.PathLike | Encoder | None) -> Encoder | None:
    return Encoder.load(encoder) if isinstance(encoder, (str, os.PathLike)) else encoder


def _previous_encoder(previous: Version | None, retrain: bool, keep: bool, n: int) -> Encoder | None:
    """The existing index's encoder, unless it is to be retrained (then None)."""
    if previous is None or retrain:
        return None
    trained = previous.manifest.encoder_trained_on
    if not keep and encoder_outgrown(previous.manifest, n):
        log.warning(
            "retraining the encoder: the index's was trained on %s, the collection now has %s "
            "(keep_encoder / --keep-encoder keeps it)",
            n_images(trained or 0),
            n_images(n),
        )
        return None
    return Encoder.load(previous.file("encoder"))


def _changed(paths: Sequence[str], old: pa.Table) -> list[str]:
    """The paths that are new, or whose size or modification time differ from what the index recorded."""
    recorded = dict(zip(pathnames.of(old), zip(old["bytes"].to_pylist(), old["mtime"].to_pylist())))
    out = []
    for p in paths:
        row = recorded.get(p)
        try:
            st = os.stat(p) if row is not None else None
        except OSError:
            st = None  # let the encoder report why it cannot be read
        if st is None or st.st_size != row[0] or row[1] is None or abs(st.st_mtime - row[1]) > 1e-6:
            out.append(p)
    return out


def _ids_of(meta: pa.Table, paths: Sequence[str]) -> list[int]:
    """The ids of the metadata rows of ``paths`` (those indexed)."""
    wanted = set(paths)
    return [i for i, p in zip(meta["id"].to_pylist(), pathnames.of(meta)) if p in wanted]


def _without(meta: pa.Table, ids: Sequence[int]) -> pa.Table:
    import pyarrow.compute as pc

    return meta.filter(pc.invert(pc.is_in(meta["id"], pa.array(ids, pa.int64()))))


def _load_for_update(previous: Version):
    try:
        return ivf.load(previous.file("index"), mmap=False)
    except RuntimeError as e:
        first = str(e).splitlines()[0][:200]
        raise IndexDirError(f"{previous.file('index')}: damaged FAISS index ({first})") from None


def _opened(root: Path, report: BuildReport) -> Index:
    opened = open_index(root)
    opened.last_build = report
    return opened

"""Opening an index and answering queries: encode, search, map distances to %, join metadata.

Only what a query needs is imported here (no training, Dask or HTML code), the FAISS lists are
memory-mapped, and only the metadata rows of the hits are read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import ivf, matching, rerank, store
from . import verify as verify_mod
from .calibration import Calibration, gap_ratios
from .encoder import Encoder, Queries
from .images import ImageError, ImageInput, to_pixels
from .manifest import IndexDirError, Manifest, Version, read_version


@dataclass(frozen=True)
class Hit:
    """One search result. ``similarity`` is the calibrated percentage (0–100); ``distance`` squared L2."""

    id: int
    path: str
    similarity: float
    distance: float
    rank: int = 1
    mirrored: bool = False  # found through the query's mirror image
    evidence: float = 0.0  # distance over the query's scale: the percentage's input (and the gap, if alone)
    inliers: int | None = None  # with verification: keypoint inliers (None: not verified)
    agreement: float | None = None  # with verification: of the aligned pictures, -1..1 (verify.py)
    residual: float | None = None  # with verification: of the inliers from the homography (verify.py)
    width: int | None = None  # the indexed file's pixels and bytes, read with its path
    height: int | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class Answer:
    """The answer to one query: its hits, best first, or the reason it could not be read."""

    hits: list[Hit]
    error: str | None = None


def _squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared L2 distances."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Index:
    """A committed version of an index directory, opened for search."""

    last_build = None  # set by build() and add(): the report of the job that made this version

    def __init__(self, version: Version):
        self.version = version
        self.path = version.root
        self.manifest = version.manifest
        try:
            self.encoder = Encoder.load(version.file("encoder"))
        except (ValueError, OSError) as e:
            raise IndexDirError(str(e)) from None
        self._check_size("index")
        try:
            self.faiss = ivf.load(version.file("index"))
        except RuntimeError as e:
            raise IndexDirError(
                f"{version.file('index')}: damaged FAISS index ({str(e).splitlines()[0][:200]})"
            ) from None
        try:
            self.calibration = Calibration.load(version.file("calibration"))
        except (ValueError, OSError) as e:
            raise IndexDirError(str(e)) from None
        self.rerank_rows = None  # of a PQ index (rerank.py)
        if version.has("rerank"):
            self._check_size("rerank")
            try:
                factor = max(self.manifest.index.rerank, rerank.FACTORS[0])
                self.rerank_rows = rerank.Vectors(version.file("rerank"), factor)
            except (ValueError, OSError) as e:
                raise IndexDirError(f"{version.file('rerank')}: damaged re-ranking vectors ({e})") from None
        metadata_path = version.file("metadata")
        if not metadata_path.is_file():
            raise IndexDirError(f"{metadata_path}: metadata file is missing")
        self._metadata = store.Metadata(metadata_path)  # open now: a later commit may delete the file
        if self.faiss.d != self.encoder.dim:
            raise IndexDirError(
                f"{version.file('index')}: dimension {self.faiss.d} does not match "
                f"the encoder's {self.encoder.dim}"
            )

    def _check_size(self, role: str) -> None:
        f = self.version.file(role)
        want = self.manifest.files[role].bytes
        try:
            have = f.stat().st_size
        except OSError:
            raise IndexDirError(f"{f}: {role} file is missing") from None
        if want is not None and have != want:
            raise IndexDirError(f"{f}: {role} file is damaged ({have} bytes, manifest says {want})")

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    def __repr__(self) -> str:
        return f"<vecsearch.Index {str(self.path)!r}: {len(self)} images, version {self.version.number}>"

    @property
    def dim(self) -> int:
        return self.encoder.dim

    # ---- queries ---------------------------------------------------------------------------
    def search(
        self, query: ImageInput, k: int = 10, min_similarity: float | None = None, verify: bool = False
    ) -> list[Hit]:
        """The k nearest images to one query (a path, encoded bytes or a BGR array), best first.

        ``verify``: check the top candidates' keypoints against the query's and move the verified
        copies first (``verify.py``; slower, and it reads the indexed files)."""
        return self.search_many([query], k, min_similarity, verify=verify)[0]

    def search_many(
        self,
        queries: Iterable[ImageInput],
        k: int = 10,
        min_similarity: float | None = None,
        batch_size: int = 256,
        verify: bool = False,
    ) -> list[list[Hit]]:
        """One hit list per query; queries are encoded and searched in batches. An unreadable query
        raises ImageError (``search_each`` answers the others)."""
        answers = self.search_each(queries, k, min_similarity, batch_size, verify)
        first = next((a.error for a in answers if a.error is not None), None)
        if first is not None:
            raise ImageError(first)
        return [a.hits for a in answers]

    def search_each(
        self,
        queries: Iterable[ImageInput],
        k: int = 10,
        min_similarity: float | None = None,
        batch_size: int = 256,
        verify: bool = False,
    ) -> list[Answer]:
        """One Answer per query, in order: its hits, or why the query could not be read."""
        _check_k(k, min_similarity)
        out: list[Answer] = []
        for batch in _chunks(queries, batch_size):
            pixels, errors = self.encoder.decode_each(batch)
            encoded = self.encoder.queries(pixels)
            if not verify:
                found = iter(self.search_queries(encoded, k, min_similarity) if pixels else [])
            else:
                candidates = self.search_queries(encoded, max(k, verify_mod.DEPTH)) if pixels else []
                found = iter([self._verified(p, c, k, min_similarity) for p, c in zip(pixels, candidates)])
            out += [Answer(next(found)) if e is None else Answer([], e) for e in errors]
        return out

    def _verified(
        self, pixels: np.ndarray, hits: list[Hit], k: int, min_similarity: float | None
    ) -> list[Hit]:
        """The hits reordered by geometric verification of the top DEPTH, then cut to k."""
        top = hits[: verify_mod.DEPTH]
        side = self.encoder.config.max_side
        found = verify_mod.evidence(
            verify_mod.QueryKeypoints(pixels),
            [(h.path, h.mirrored) for h in top],
            lambda p: to_pixels(p, side),
        )
        order = verify_mod.rerank(found) + list(range(len(top), len(hits)))
        taught = self.calibration.taught  # the user's meaning: the percentages stay the labels' curve's
        checked = [*found, *([None] * (len(hits) - len(top)))]
        ranked = [
            dataclasses.replace(
                hits[i],
                rank=r + 1,
                **({} if checked[i] is None else dataclasses.asdict(checked[i])),  # Check's fields are Hit's
                similarity=verify_mod.adjusted(hits[i].similarity, None if taught else checked[i]),
            )
            for r, i in enumerate(order)
        ]
        return [h for h in ranked if h.similarity >= (min_similarity or 0.0)][:k]

    def search_vectors(
        self, vectors: np.ndarray, k: int = 10, min_similarity: float | None = None
    ) -> list[list[Hit]]:
        """Search with precomputed vectors (from this index's encoder), as they are: no mirror image
        and no colourless comparison, which need the pixels (``search_many`` does both)."""
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        if vectors.shape[1] != self.dim:
            raise ValueError(f"query vectors have dimension {vectors.shape[1]}, the index {self.dim}")
        _check_k(k, min_similarity)
        cal = self.calibration
        dist, ids = ivf.search(self.faiss, vectors, cal.hits_needed(k), self.rerank_rows)
        background = (
            _squared(vectors, cal.background) if cal.relative and cal.background is not None else None
        )
        return self._hits(dist, ids, np.zeros(ids.shape, bool), background, k, min_similarity)

    def search_queries(
        self, queries: Queries, k: int = 10, min_similarity: float | None = None
    ) -> list[list[Hit]]:
        """Search with encoded queries (``Encoder.encode_queries``): straight and mirrored, colourless
        ones without colour (``matching.py``)."""
        _check_k(k, min_similarity)
        enc, cal = self.encoder, self.calibration
        cdim, w = enc.colour_dim, enc.config.colour_weight
        dist, ids, mirrored = matching.search(
            self.faiss, queries, cal.hits_needed(k), cdim, w, self.rerank_rows
        )
        background = None
        if cal.relative and cal.background is not None:
            background = matching.distance_matrix(queries, cal.background, cdim, w)
        return self._hits(dist, ids, mirrored, background, k, min_similarity)

    def _hits(
        self, dist: np.ndarray, ids: np.ndarray, mirrored: np.ndarray, background, k: int, min_similarity
    ) -> list[list[Hit]]:
        """The first k hits of each query with their percentages (a query's scale comes from all its
        hits and its distances to the reference vectors, ``background``)."""
        dist = np.where(ids >= 0, dist, np.inf)
        cal = self.calibration
        evidence = cal.evidence(dist, cal.scales(dist, background))
        sim = cal.percent_of_hits(evidence, gap_ratios(dist, dist) if cal.lone is not None else None)
        dist, ids, mirrored, sim, evidence = (a[:, :k] for a in (dist, ids, mirrored, sim, evidence))
        keep = (ids >= 0) & (sim >= (min_similarity or 0.0))
        facts = self._metadata.facts(ids[keep])

        def hit(i: int, rank: int, s: float, d: float, m: bool, e: float) -> Hit:
            path, width, height, size = facts[i]
            return Hit(i, path, s, d, rank, m, e, width=width, height=height, bytes=size)

        return [
            [
                hit(int(i), r + 1, float(s), float(d), bool(m), float(e))
                for r, (i, s, d, m, e, ok) in enumerate(
                    zip(ids[q], sim[q], dist[q], mirrored[q], evidence[q], keep[q])
                )
                if ok
            ]
            for q in range(len(ids))
        ]

    def paths(self, ids: Sequence[int]) -> dict[int, str]:
        """id → path of those of ``ids`` that are indexed."""
        return self._metadata.paths(np.asarray(ids, np.int64))

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The indexed vectors of ``ids`` (as searches measure them: re-ranking rows for PQ)."""
        return ivf.reconstruct(self.faiss, np.asarray(ids, np.int64), self.rerank_rows)

    def scales(self, vectors: np.ndarray, exclude: Sequence[int] | None = None) -> np.ndarray:
        """The calibration's scale of each vector as a query (``calibration.query_scales``), the
        ids ``exclude`` (its own entry) left out of its neighbours."""
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        cal = self.calibration
        if not cal.relative:
            return np.ones(len(vectors))
        dist, found = ivf.search(self.faiss, vectors, cal.rank + 1, self.rerank_rows)
        if exclude is not None:
            found = np.where(found == np.asarray(exclude)[:, None], -1, found)
        dist = np.where(found >= 0, dist, np.inf)
        return cal.scales(dist, _squared(vectors, cal.background) if cal.background is not None else None)

    # ---- metadata --------------------------------------------------------------------------
    def metadata(self, ids: Sequence[int] | None = None) -> pa.Table:
        """Metadata rows (all, or those of ``ids``) as an Arrow table."""
        if ids is None:
            return self._metadata.read()
        return self._metadata.rows(np.asarray(ids))

    def skipped(self) -> pa.Table:
        """Files the builds could not index: path, reason (and ``path_bytes``, see ``pathnames.py``)."""
        return store.read_skipped_table(self.version.file("skipped"))

    def info(self) -> dict:
        """What the manifest says, in a form fit for printing or JSON."""
        m = self.manifest
        fitted = self.calibration.fitted_on
        return {
            "path": str(self.path),
            "version": m.version,
            "images": len(self),
            "skipped": m.counts.skipped,
            "dimension": self.dim,
            "index": dataclasses.asdict(m.index),
            # the whole config, with the fields older encoder files leave out
            "encoder": {**dataclasses.asdict(m.encoder), "config": dataclasses.asdict(self.encoder.config)},
            "calibration": {k: v for k, v in fitted.items() if "histogram" not in k},
            "advice": retrain_advice(m, len(self)),
            "committed_at": m.committed_at,
            "created_at": m.created_at,
            "libraries": m.libraries,
        }


#: Growth past which the encoder sample or the IVF lists no longer represent the collection well.
GROWTH = 4


def encoder_outgrown(manifest: Manifest, n: int) -> bool:
    """Whether the encoder saw so few images (GROWTH times fewer than ``n``, and fewer than a full
    training sample) that a build of ``n`` images should train a new one."""
    trained = manifest.encoder_trained_on or 0
    sample = int(manifest.encoder.config.get("train_images", 1000))
    return bool(trained) and n > GROWTH * trained and trained < sample


def retrain_advice(manifest: Manifest, n: int) -> str | None:
    """Say when the collection has outgrown what its encoder and index were trained on."""
    spec = manifest.index
    rebuild = "'vecsearch build --retrain' would"
    if spec.nlist == 1 and n > ivf.EXACT_MAX:
        return f"{n} images is past exact search's {ivf.EXACT_MAX}: {rebuild} switch to a faster IVF index"
    if spec.nlist > 1 and spec.trained_on and n > GROWTH * spec.trained_on:
        return (
            f"grew from {spec.trained_on} to {n} images since the IVF index was trained: "
            f"{rebuild} restore its speed and recall"
        )
    enc_n = manifest.encoder_trained_on or 0
    if enc_n and n > GROWTH * enc_n:
        since = f"grew from {enc_n} to {n} images since the encoder was trained"
        return f"{since}: {rebuild} fit it to the collection"
    return None


def _check_k(k: int, min_similarity: float | None) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a whole number ≥ 1, not {k!r}")
    if min_similarity is not None and not (0 <= float(min_similarity) <= 100):
        raise ValueError(f"min_similarity is a percentage from 0 to 100, not {min_similarity!r}")


def open_index(path: str | os.PathLike) -> Index:
    """Open the current version of the index directory at ``path``.

    A writer deletes the files of the version before the previous one; a reader that read the
    manifest just before two commits could find its files gone, so it reads the manifest again.
    """
    for attempt in range(3):
        version = read_version(path)
        try:
            return Index(version)
        except IndexDirError:
            if attempt == 2 or read_version(path).number == version.number:
                raise
    raise AssertionError("unreachable")

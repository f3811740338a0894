"""The encoder: image → one fixed-length float32 vector, with state trained once and saved.

vector = L2-normalise([√w · PCA_c(colour), √(1-w) · PCA(VLAD(ORB))]) where both parts have unit
norm, so ``colour_weight`` w is the colour part's share of the squared norm. The colour PCA is
partly whitened; the VLAD one is not (both measured, bench/TUNING.md). Everything that shapes a
vector (config, vocabulary, both PCAs) lives in one ``.npz`` written without pickle, so any process
that loads it encodes identically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .features import colour_histogram, colourless, orb_descriptors, vlad
from .features.colour import SIDE as COLOUR_SIDE
from .features.vlad import unpack_bits
from .files import replacing
from .images import FileInfo, ImageError, ImageInput, to_pixels
from .images import load as load_image
from .manifest import ENCODER_FILE, encoder_file
from .vectors import EncodedFiles, table

log = logging.getLogger(__name__)

FORMAT = 1


#: Fields added after encoders were first saved, with the value those encoders used: an encoder
#: file without the field loads with it, and encodes queries exactly as it encoded its index.
LEGACY = {"colour_side": 256}


@dataclass(frozen=True)
class EncoderConfig:
    """Parameters of the encoder; chosen by measurement (bench/RESULTS.md)."""

    max_side: int = 320  # half of 640: JPEGs decode straight to it at reduced DCT scale
    n_features: int = 1000
    n_centres: int = 64
    pca_dim: int = 256
    whiten: float = 0.0  # 0 = no whitening, 1 = full; divides by eigenvalue^(whiten/2)
    colour_weight: float = 0.4  # chosen on all four shared sets, copies among them (bench/TUNING.md)
    colour_bins: tuple[int, int, int] = (16, 4, 4)
    colour_grid: int = 2
    colour_grid_bins: tuple[int, int, int] = (8, 3, 3)
    colour_grid_weight: float = 0.7
    texture_weight: float = 0.7
    colour_pca_dim: int = 128
    colour_side: int = (
        COLOUR_SIDE  # colour/texture on a copy this large: as good as 256 px, 2x faster (bench/TUNING.md)
    )
    colour_whiten: float = 0.375  # partial whitening of the colour part: +0.04 Holidays mAP
    train_images: int = 1000  # sample size for the vocabulary and the PCA
    seed: int = 1234

    @property
    def min_train_views(self) -> int:
        """Fewer training images than this are topped up with crops (see ``Encoder.fit``)."""
        return 2 * max(self.pca_dim, self.colour_pca_dim)

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        for name, value in LEGACY.items():  # so encoders saved before a field existed keep their fingerprint
            if fields[name] == value:
                del fields[name]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EncoderConfig:
        raw = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(
                f"encoder config has unknown fields {sorted(unknown)} (made by a newer vecsearch?)"
            )
        raw = {**LEGACY, **raw}
        for k in ("colour_bins", "colour_grid_bins"):
            if k in raw:
                raw[k] = tuple(raw[k])
        return cls(**raw)


@dataclass
class Features:
    """What one image yields before the batch-level (matrix) part of encoding."""

    colour: np.ndarray
    descriptors: np.ndarray


def extract(pixels: np.ndarray, config: EncoderConfig) -> Features:
    colour = colour_histogram(
        pixels,
        config.colour_bins,
        config.colour_grid,
        config.colour_grid_bins,
        config.colour_grid_weight,
        config.texture_weight,
        config.colour_side,
    )
    return Features(colour, orb_descriptors(pixels, config.n_features))


def _pca(x: np.ndarray, dim: int, whiten: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components) of a faiss PCA to ``dim``; rows divided by eigenvalue^(whiten/2)."""
    import faiss

    dim = min(dim, x.shape[1])
    pca = faiss.PCAMatrix(x.shape[1], dim, -whiten / 2)
    pca.train(np.ascontiguousarray(x, np.float32))
    return faiss.vector_to_array(pca.mean).astype(np.float32), faiss.vector_to_array(pca.A).reshape(
        dim, x.shape[1]
    ).astype(np.float32)


def extract_files(config: EncoderConfig, paths: Sequence[str]) -> list[Features]:
    """Features of the readable files among ``paths`` (training samples: bad files just drop out);
    the config first, as executors pass what they share."""
    out = []
    for p in paths:
        try:
            out.append(extract(load_image(p, config.max_side)[0], config))
        except ImageError:
            continue
    return out


def _project(x: np.ndarray, mean: np.ndarray, components64: np.ndarray) -> np.ndarray:
    """PCA projection in float64: BLAS sums in an order that depends on its thread count, and with
    double accumulation the float32 result is the same in every process, threaded or not."""
    return ((x - mean).astype(np.float64) @ components64.T).astype(np.float32)


def _l2(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _views(pixels: list[np.ndarray], needed: int, seed: int) -> list[np.ndarray]:
    """The images, topped up with random crops and mirrors of them until there are ``needed``.

    Lets a collection too small to fit a PCA on still get a working encoder.
    """
    rng = np.random.default_rng(seed)
    out = list(pixels)
    i = 0
    while len(out) < needed and pixels:
        p = pixels[i % len(pixels)]
        h, w = p.shape[:2]
        f = rng.uniform(0.5, 0.9)
        ch, cw = min(h, max(8, int(h * f))), min(w, max(8, int(w * f)))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        v = p[y : y + ch, x : x + cw]
        out.append(np.ascontiguousarray(v[:, ::-1] if rng.random() < 0.5 else v))
        i += 1
    return out


#: Images made from a file's decoded pixels, to be encoded too (``Encoder.encode_files``).
Derive = Callable[[FileInfo, np.ndarray], Sequence[np.ndarray]]


@dataclass
class Queries:
    """Images encoded to search with: each one's vector, its mirror image's, and whether it is
    colourless (then it is compared without its colour part: ``matching.py``)."""

    vectors: np.ndarray  # (n, dim)
    mirrored: np.ndarray  # (n, dim)
    colourless: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, rows) -> Queries:
        return Queries(self.vectors[rows], self.mirrored[rows], self.colourless[rows])

    def rows(self) -> np.ndarray:
        """One float32 row per query, [vector, mirrored, colourless]: how build chunks keep them."""
        flag = self.colourless.astype(np.float32)[:, None]
        return np.hstack([self.vectors, self.mirrored, flag]).astype(np.float32)

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> Queries:
        d = (rows.shape[1] - 1) // 2
        return cls(rows[:, :d], rows[:, d : 2 * d], rows[:, 2 * d] > 0.5)

    @classmethod
    def concat(cls, parts: Sequence[Queries]) -> Queries:
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("vectors", "mirrored", "colourless"))
        )


class Encoder:
    """Trained encoder state: immutable after fitting, so ``encode`` is safe to call from several
    threads, and picklable (its arrays, about 17 MB with the defaults) to send to workers."""

    def __init__(
        self,
        config: EncoderConfig,
        centres: np.ndarray,
        pca_mean: np.ndarray,
        pca_components: np.ndarray,
        colour_mean: np.ndarray,
        colour_components: np.ndarray,
    ):
        self.config = config
        self.centres = np.ascontiguousarray(centres, np.float32)
        self.pca_mean = np.ascontiguousarray(pca_mean, np.float32)
        self.pca_components = np.ascontiguousarray(pca_components, np.float32)
        self.colour_mean = np.ascontiguousarray(colour_mean, np.float32)
        self.colour_components = np.ascontiguousarray(colour_components, np.float32)
        self._components64 = self.pca_components.astype(np.float64)
        self._colour64 = self.colour_components.astype(np.float64)
        self._fingerprint: str | None = None

    STATE = ("centres", "pca_mean", "pca_components", "colour_mean", "colour_components")

    # ---- shape -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.colour_dim + int(self.pca_components.shape[0])

    @property
    def colour_dim(self) -> int:
        return int(self.colour_components.shape[0])

    def fingerprint(self) -> str:
        """Short hash of the state: two encoders with the same fingerprint make the same vectors.

        Kept once computed (the state never changes): hashing 17 MB for every written chunk of a
        build cost its driver a second of CPU per 4000 images."""
        if self._fingerprint is None:
            import hashlib

            h = hashlib.sha1(self.config.to_json().encode())
            for a in self._arrays():
                h.update(a.tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    # ---- encoding --------------------------------------------------------------------------
    def encode_features(self, feats: Sequence[Features]) -> np.ndarray:
        """The batch (matrix) half of encoding: VLAD, PCA, weighting; (n, dim) float32."""
        if not feats:
            return np.zeros((0, self.dim), np.float32)
        w = self.config.colour_weight
        colour = _l2(_project(np.stack([f.colour for f in feats]), self.colour_mean, self._colour64))
        v = vlad([f.descriptors for f in feats], self.centres)
        has_words = np.linalg.norm(v, axis=1) > 0
        v = _l2(_project(v, self.pca_mean, self._components64)) * has_words[:, None]
        return _l2(np.hstack([np.sqrt(w) * colour, np.sqrt(1 - w) * v]).astype(np.float32))

    def encode(self, images: Iterable[ImageInput] | ImageInput) -> np.ndarray:
        """Encode paths, encoded bytes or decoded arrays (BGR, as OpenCV) → (n, dim) float32.

        Raises ImageError naming the first input that cannot be decoded; ``encode_each`` encodes
        the others instead, ``encode_files`` skips bad files and reports them.
        """
        vectors, errors = self.encode_each(images)
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise ImageError(first)
        return vectors

    def encode_each(self, images: Iterable[ImageInput] | ImageInput) -> tuple[np.ndarray, list[str | None]]:
        """The vectors of the inputs that can be decoded, in order, and for each input None or why
        it cannot be ("x.jpg: empty file", "input 3: not a recognised image format")."""
        pixels, errors = self.decode_each(images)
        return self.encode_features([extract(p, self.config) for p in pixels]), errors

    def encode_queries(self, images: Iterable[ImageInput] | ImageInput) -> tuple[Queries, list[str | None]]:
        """``encode_each`` as a search needs it: each image's vector, its mirror image's, and whether
        it is colourless (``Queries``)."""
        pixels, errors = self.decode_each(images)
        return self.queries(pixels), errors

    def queries(self, pixels: Sequence[np.ndarray]) -> Queries:
        """The ``Queries`` of decoded images at working size (one batch: the PCA is matrix-shaped)."""
        mirrors = [np.ascontiguousarray(p[:, ::-1]) for p in pixels]
        both = self.encode_features([extract(p, self.config) for p in [*pixels, *mirrors]])
        grey = np.array([colourless(p) for p in pixels], bool)
        return Queries(both[: len(pixels)], both[len(pixels) :], grey)

    def decode_each(
        self, images: Iterable[ImageInput] | ImageInput
    ) -> tuple[list[np.ndarray], list[str | None]]:
        """The decoded pixels (at working size) of the inputs that can be read, and for each input
        None or why not."""
        if isinstance(images, (str, os.PathLike, bytes, np.ndarray)) and not (
            isinstance(images, np.ndarray) and images.dtype == object
        ):
            images = [images]
        pixels, errors = [], []
        for i, image in enumerate(images):
            try:
                pixels.append(to_pixels(image, self.config.max_side))
                errors.append(None)
            except ImageError as e:
                name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"input {i}"
                errors.append(f"{name}: {e}")
        return pixels, errors

    def encode_files(self, paths: Sequence[str], derive: Derive | None = None) -> EncodedFiles:
        """Encode files, skipping (and reporting) the ones that cannot be read or decoded.

        ``derive(info, pixels)`` may return images made from a file's decoded pixels (calibration's
        edited copies); they are encoded as queries (``Queries.rows``), shrunk to the working size
        as a query would be.
        """
        feats, infos, failures = [], [], []
        derived: dict[str, list[np.ndarray]] = {}
        for path in paths:
            try:
                pixels, info = load_image(path, self.config.max_side)
                f = extract(pixels, self.config)
                made = derive(info, pixels) if derive is not None else ()
                if made:
                    derived[path] = [to_pixels(m, self.config.max_side) for m in made]
                feats.append(f)
                infos.append(info)
            except ImageError as e:
                failures.append((path, str(e)))
            except Exception as e:  # a decoder bug must cost one file, not the build
                failures.append((path, f"unexpected error: {type(e).__name__}: {e}"))
        rows = self.queries([p for ps in derived.values() for p in ps]).rows()
        split = np.split(rows, np.cumsum([len(ps) for ps in derived.values()])[:-1])
        return EncodedFiles(self.encode_features(feats), infos, failures, dict(zip(derived, split)))

    def encode_table(self, paths: Sequence[str]):
        """Encode files into a ``pyarrow.Table`` (path, vector, error, file facts); bad files get an error."""
        return table(self.encode_files(list(paths)), self)

    # ---- training --------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        images: Iterable[ImageInput],
        config: EncoderConfig | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Encoder:
        """Train on sample images (paths, bytes or arrays); unreadable inputs are skipped.

        With fewer images than the PCA needs, crops of them and of the example photos shipped with
        vecsearch fill the gap, so even a one-image collection gets a working encoder.
        """
        config = config or EncoderConfig()
        pixels = []
        for image in images:
            try:
                pixels.append(to_pixels(image, config.max_side))
            except ImageError as e:
                log.warning(
                    "training: skipped %s: %s",
                    image if isinstance(image, (str, os.PathLike)) else "an input",
                    e,
                )
            if progress:
                progress(1)
        if len(pixels) < config.min_train_views:
            pixels = _views(
                pixels + [to_pixels(p, config.max_side) for p in example_images()],
                config.min_train_views,
                config.seed,
            )
        return cls.fit_features([extract(p, config) for p in pixels], config)

    @classmethod
    def fit_features(cls, feats: Sequence[Features], config: EncoderConfig) -> Encoder:
        """The vocabulary (faiss k-means), the PCA (faiss, via the Gram matrix when there are fewer
        images than VLAD dimensions) and the colour mean, from extracted features."""
        import faiss

        need = max(config.pca_dim, config.colour_pca_dim) + 1
        if len(feats) < need:
            raise ValueError(f"training needs at least {need} images for its PCAs (got {len(feats)})")
        rng = np.random.default_rng(config.seed)
        desc = np.concatenate([f.descriptors for f in feats])
        if len(desc) < config.n_centres * 39:
            raise ValueError("too few ORB keypoints in the training images to build a vocabulary")
        # k-means looks at most 256 points per centre: sample before unpacking bits into floats.
        take = min(len(desc), config.n_centres * 256)
        x = unpack_bits(desc[np.sort(rng.choice(len(desc), take, replace=False))])
        km = faiss.Kmeans(
            x.shape[1], config.n_centres, niter=20, seed=config.seed, max_points_per_centroid=256
        )
        km.train(x)
        centres = km.centroids.copy()
        mean, comps = _pca(vlad([f.descriptors for f in feats], centres), config.pca_dim, config.whiten)
        colour_mean, colour_comps = _pca(
            np.stack([f.colour for f in feats]), config.colour_pca_dim, config.colour_whiten
        )
        return cls(config, centres, mean, comps, colour_mean, colour_comps)

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the state to ``path`` (a .npz file, or a directory that gets encoder.npz)."""
        path = Path(path)
        if path.suffix != ".npz":
            path.mkdir(parents=True, exist_ok=True)
            path = path / ENCODER_FILE
        with replacing(path) as tmp, open(tmp, "wb") as f:
            state = dict(zip(self.STATE, self._arrays()))
            np.savez(f, format=np.array(FORMAT), config=np.array(self.config.to_json()), **state)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Encoder:
        """Load from an encoder .npz, a directory holding encoder.npz, or an index directory."""
        path = encoder_file(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                fmt = int(z["format"])
                if fmt > FORMAT:
                    raise ValueError(
                        f"{path}: encoder format {fmt} is newer than this vecsearch understands ({FORMAT})"
                    )
                config = EncoderConfig.from_json(str(z["config"]))
                enc = cls(config, *(z[k] for k in cls.STATE))
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            msg = str(e)
            raise ValueError(
                msg if msg.startswith(str(path)) else f"{path}: not a valid encoder file ({msg})"
            ) from None
        return enc

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, k) for k in self.STATE)

    def __getstate__(self) -> dict:
        return {"config": self.config.to_json(), "arrays": self._arrays()}

    def __setstate__(self, state: dict) -> None:
        self.__init__(EncoderConfig.from_json(state["config"]), *state["arrays"])


def example_images() -> list[str]:
    """Paths of the small public-domain/CC0 photos shipped with vecsearch (see examples/SOURCES.md)."""
    folder = Path(__file__).parent / "examples"
    return sorted(str(p) for p in folder.glob("*.jpg"))

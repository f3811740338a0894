"""Choose encoder parameters by measurement on the three labelled sets (UKBench, Holidays, Wang).

    python -m bench.tune            # print the table of candidate settings (uses caches in /tmp)
    python -m bench.tune --no-speed # quality only

For each candidate the encoder is fitted on the set itself (vocabulary, PCA and colour mean, as an
index build does) and every query ranks the whole set. Reported: UKBench N-S, Holidays mAP, Wang
P@10, and the single-process speed of ``Encoder.encode_files`` on UKBench (640x480 JPEGs) with
OpenCV limited to one thread (one of the two build processes on a 2-core machine).

Per-image features depend only on the extraction parameters, so they are cached in /tmp:
ORB descriptors per (set, max_side, n_features) and colour/texture "blocks" per (set, size). A
candidate's colour part is a weighted concatenation of blocks; the vocabulary, PCA, weights are
re-fitted per candidate. Fitting differs from ``Encoder.fit`` only in that k-means is given a random
sample of 256 descriptors per centre up front (faiss would subsample to the same number itself).
``--check`` re-runs chosen candidates end to end through the real ``Encoder.fit``/``encode_files``.

Colour/texture blocks (each a √-normalised histogram with unit L2 norm):
  hsv       global HSV histogram, (8, 12, 3) bins                       [vecsearch default]
  hsv_g2    2x2 grid of HSV (8, 3, 3) histograms                         [vecsearch default]
  hsv_g3    3x3 grid of HSV (8, 3, 3) histograms
  hsv_cs    HSV (8, 3, 3) histograms of the centre (middle half of each side) and the surround
  hsv18     global HSV histogram, (18, 3, 3) bins
  hsv16     global HSV histogram, (16, 4, 4) bins
  hsv_ac    HSV (8, 3, 3) colour autocorrelogram at distances 1 and 3 (same-colour neighbour rate)
  lab       global Lab histogram, (4, 6, 6) bins
  lbp       uniform 8-neighbour LBP histogram (59 codes) of the grey image
  lbp_g2    the same per cell of a 2x2 grid
  edge_g2   edge-direction histogram per cell of a 2x2 grid: 8 gradient orientations weighted by
            magnitude, plus one bin for flat pixels
  edge_g3   the same on a 3x3 grid
Suffix ``@full``: computed on the pixels ORB sees (max_side); otherwise on a copy shrunk to at most
SMALL pixels on the longer side, which is cheaper and, for histograms, nearly the same.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from vecsearch import encoder as enc_mod
from vecsearch import images as imgs
from vecsearch.encoder import Encoder, EncoderConfig, _l2
from vecsearch.evaluate import load_labelled_set, ranking, retrieval_metrics
from vecsearch.features import orb_descriptors
from vecsearch.features.vlad import unpack_bits, vlad

DATA = Path(os.environ.get("VECSEARCH_DATA", "/work/shared/data"))
CACHE = Path(os.environ.get("VECSEARCH_TUNE_CACHE", "/tmp/vecsearch_tune"))
SETS = ("ukbench", "holidays", "wang")
SMALL = 256  # longer side of the copy the cheap blocks are computed on
BLOCKS_VERSION = 2  # bump when a block's definition changes

# ---------------------------------------------------------------------------------------------
# colour / texture blocks
# ---------------------------------------------------------------------------------------------


def _norm_sqrt(h: np.ndarray) -> np.ndarray:
    h = h.astype(np.float32).ravel()
    s = h.sum()
    return np.sqrt(h / s) if s > 0 else h


def _cells(h: int, w: int, g: int) -> list[tuple[slice, slice]]:
    ys = np.linspace(0, h, g + 1).round().astype(int)
    xs = np.linspace(0, w, g + 1).round().astype(int)
    return [
        (slice(ys[i], max(ys[i + 1], ys[i] + 1)), slice(xs[j], max(xs[j + 1], xs[j] + 1)))
        for i in range(g)
        for j in range(g)
    ]


def _hsv_hist(hsv: np.ndarray, bins, mask=None) -> np.ndarray:
    return cv2.calcHist([hsv], [0, 1, 2], mask, list(bins), [0, 180, 0, 256, 0, 256]).ravel()


def _grid(img: np.ndarray, g: int, fn) -> np.ndarray:
    """Concatenate √-normalised fn(cell) over a g×g grid, scaled to unit total norm."""
    parts = [_norm_sqrt(fn(np.ascontiguousarray(img[sy, sx]))) for sy, sx in _cells(*img.shape[:2], g)]
    return np.concatenate(parts) / np.float32(g)


def block_hsv(bgr):
    return _norm_sqrt(_hsv_hist(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV), (8, 12, 3)))


def block_hsv_g2(bgr):
    return _grid(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV), 2, lambda c: _hsv_hist(c, (8, 3, 3)))


def block_hsv_g3(bgr):
    return _grid(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV), 3, lambda c: _hsv_hist(c, (8, 3, 3)))


def block_hsv_cs(bgr):
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    h, w = hsv.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h - h // 4, w // 4 : w - w // 4] = 255
    centre = _norm_sqrt(_hsv_hist(hsv, (8, 3, 3), mask))
    surround = _norm_sqrt(_hsv_hist(hsv, (8, 3, 3), 255 - mask))
    return np.concatenate([centre, surround]) / np.float32(np.sqrt(2))


def block_hsv18(bgr):
    return _norm_sqrt(_hsv_hist(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV), (18, 3, 3)))


def block_hsv16(bgr):
    return _norm_sqrt(_hsv_hist(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV), (16, 4, 4)))


def _quantise_hsv(bgr: np.ndarray, bins=(8, 3, 3)) -> np.ndarray:
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    h = (hsv[..., 0].astype(np.int32) * bins[0]) // 180
    s = (hsv[..., 1].astype(np.int32) * bins[1]) >> 8
    v = (hsv[..., 2].astype(np.int32) * bins[2]) >> 8
    return (h * bins[1] + s) * bins[2] + v


def block_hsv_ac(bgr, dists=(1, 3)):
    """Colour autocorrelogram: per quantised colour and distance, how often a pixel's right and lower
    neighbours at that distance have the same colour (times the colour's frequency, so it sums to ≤1)."""
    q = _quantise_hsv(bgr)
    n = 72
    parts = []
    for d in dists:
        same = np.concatenate([q[:, :-d][q[:, :-d] == q[:, d:]], q[:-d, :][q[:-d, :] == q[d:, :]]])
        parts.append(np.bincount(same, minlength=n).astype(np.float32) / (2 * q.size))
    return np.sqrt(np.concatenate(parts)) / np.float32(np.sqrt(len(dists)))


def block_lab(bgr):
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
    return _norm_sqrt(cv2.calcHist([lab], [0, 1, 2], None, [4, 6, 6], [0, 256, 0, 256, 0, 256]))


from vecsearch.features.colour import _lbp  # noqa: E402  (the uniform-LBP codes the encoder ships)


def block_lbp(bgr):
    codes = _lbp(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    return _norm_sqrt(np.bincount(codes.ravel(), minlength=59))


def block_lbp_g2(bgr):
    codes = _lbp(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    return _grid(codes, 2, lambda c: np.bincount(c.ravel(), minlength=59))


def _edge_bins(bgr: np.ndarray, flat: float = 20.0):
    """Per pixel: orientation bin 0..7 (unsigned, 22.5° wide) or 8 when the gradient is weak; weight."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    mag, ang = cv2.cartToPolar(gx, gy)  # ang in radians 0..2π
    b = (np.floor(ang * (8 / np.pi)).astype(np.int32)) % 8
    weak = mag < flat
    b[weak] = 8
    wgt = np.where(weak, np.float32(flat), mag)
    return b, wgt


def _edge_grid(bgr, g):
    b, wgt = _edge_bins(bgr)
    stack = np.stack([b.astype(np.float32), wgt], axis=-1)
    return _grid(
        stack, g, lambda c: np.bincount(c[..., 0].astype(np.int32).ravel(), c[..., 1].ravel(), minlength=9)
    )


def block_edge_g2(bgr):
    return _edge_grid(bgr, 2)


def block_edge_g3(bgr):
    return _edge_grid(bgr, 3)


BLOCKS = {
    "hsv": block_hsv,
    "hsv_g2": block_hsv_g2,
    "hsv_g3": block_hsv_g3,
    "hsv_cs": block_hsv_cs,
    "hsv18": block_hsv18,
    "hsv16": block_hsv16,
    "hsv_ac": block_hsv_ac,
    "lab": block_lab,
    "lbp": block_lbp,
    "lbp_g2": block_lbp_g2,
    "edge_g2": block_edge_g2,
    "edge_g3": block_edge_g3,
}
FULL_BLOCKS = ("hsv", "hsv_g2")  # also computed at full working size, for the baseline


def shrink(bgr: np.ndarray, side: int = SMALL) -> np.ndarray:
    return imgs.fit_size(bgr, side)


def colour_vector(bgr: np.ndarray, spec: tuple[tuple[str, float], ...]) -> np.ndarray:
    """The colour part of a candidate: weighted blocks, computed as a build would compute them."""
    small = None
    parts = []
    for name, weight in spec:
        if name.endswith("@full"):
            parts.append(weight * BLOCKS[name[:-5]](bgr))
        else:
            small = shrink(bgr) if small is None else small
            parts.append(weight * BLOCKS[name](small))
    return np.concatenate(parts).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# cached per-image features
# ---------------------------------------------------------------------------------------------


@dataclass
class SetData:
    name: str
    groups: np.ndarray
    queries: np.ndarray
    paths: list[str]


_SETS: dict[str, SetData] = {}


def get_set(name: str) -> SetData:
    if name not in _SETS:
        ds = load_labelled_set(DATA / name)
        _SETS[name] = SetData(name, ds.groups, ds.queries, ds.paths)
    return _SETS[name]


def _effective_side(name: str, max_side: int) -> int:
    """max_side as it affects this set (no image is enlarged, so larger values are all the same)."""
    native = {"holidays": 325, "wang": 384}.get(name)
    return native if native is not None and max_side >= native else max_side


def orb_cache(name: str, max_side: int, n_features: int) -> list[np.ndarray]:
    side = _effective_side(name, max_side)
    f = CACHE / f"{name}_orb_{side}_{n_features}.npz"
    if f.exists():
        z = np.load(f)
        return np.split(z["desc"], z["offsets"][1:-1])
    ds = get_set(name)
    descs = [orb_descriptors(imgs.load(p, side)[0], n_features) for p in ds.paths]
    offsets = np.cumsum([0] + [len(d) for d in descs])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(f, desc=np.concatenate(descs), offsets=offsets)
    return descs


def block_cache(name: str, max_side: int) -> dict[str, np.ndarray]:
    side = _effective_side(name, max_side)
    f = CACHE / f"{name}_blocks{BLOCKS_VERSION}_{side}_{SMALL}.npz"
    if f.exists():
        return dict(np.load(f))
    ds = get_set(name)
    out: dict[str, list] = {}
    for p in ds.paths:
        bgr = imgs.load(p, side)[0]
        small = shrink(bgr)
        for b, fn in BLOCKS.items():
            out.setdefault(b, []).append(fn(small))
        for b in FULL_BLOCKS:
            out.setdefault(b + "@full", []).append(BLOCKS[b](bgr))
    arrays = {k: np.stack(v) for k, v in out.items()}
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(f, **arrays)
    return arrays


# ---------------------------------------------------------------------------------------------
# candidates
# ---------------------------------------------------------------------------------------------

BASE_SPEC = (("hsv@full", 1.0), ("hsv_g2@full", 1.0))


@dataclass(frozen=True)
class Candidate:
    label: str
    config: EncoderConfig = field(default_factory=EncoderConfig)
    colour: tuple[tuple[str, float], ...] = BASE_SPEC
    colour_pca: int = 0  # >0: project the centred colour part on its top components (fitted per set)
    colour_whiten: float = 0.0  # with colour_pca: divide by eigenvalue^(colour_whiten/2), as whiten does


def cfg(**kw) -> EncoderConfig:
    return replace(EncoderConfig(), **kw)


def _vlad_batched(descs: list[np.ndarray], centres: np.ndarray, batch: int = 200) -> np.ndarray:
    return np.concatenate([vlad(descs[i : i + batch], centres) for i in range(0, len(descs), batch)])


_FIT_CACHE: dict = {}


def fit_vlad(name: str, c: EncoderConfig):
    """Vocabulary and raw VLAD vectors of a set, as Encoder.fit would make them (memoised)."""
    key = (name, _effective_side(name, c.max_side), c.n_features, c.n_centres, c.seed)
    if key not in _FIT_CACHE:
        import faiss

        descs = orb_cache(name, c.max_side, c.n_features)
        allx = np.concatenate(descs)
        rng = np.random.default_rng(c.seed)
        take = min(len(allx), 256 * c.n_centres)
        sample = unpack_bits(allx[rng.choice(len(allx), take, replace=False)])
        km = faiss.Kmeans(sample.shape[1], c.n_centres, niter=20, seed=c.seed, spherical=False)
        km.train(sample)
        centres = km.centroids.copy()
        _FIT_CACHE[key] = (centres, _vlad_batched(descs, centres))
    return _FIT_CACHE[key]


def fit_pca(v: np.ndarray, c: EncoderConfig):
    from sklearn.decomposition import PCA

    pca = PCA(n_components=c.pca_dim, svd_solver="randomized", random_state=c.seed).fit(v)
    comps = pca.components_.astype(np.float32)
    if c.whiten:
        comps /= (pca.explained_variance_.astype(np.float32)[:, None] + 1e-9) ** (c.whiten / 2)
    return pca.mean_.astype(np.float32), comps


def colour_matrix(name: str, cand: Candidate) -> np.ndarray:
    blocks = block_cache(name, cand.config.max_side)
    return np.hstack([w * blocks[b] for b, w in cand.colour]).astype(np.float32)


def encode_set(name: str, cand: Candidate):
    """(vectors, fitted Encoder) for one set, fitted on that set."""
    c = cand.config
    centres, v = fit_vlad(name, c)
    mean, comps = fit_pca(v, c)
    colour = colour_matrix(name, cand)
    colour_mean = raw_mean = colour.mean(axis=0)
    if cand.colour_pca:
        _, sv, vt = np.linalg.svd(colour - colour_mean, full_matrices=False)
        ev = sv[: cand.colour_pca] ** 2 / len(colour)
        proj = vt[: cand.colour_pca].T / (ev + 1e-6) ** (cand.colour_whiten / 2)
        colour = (colour - colour_mean) @ proj
        colour_mean = np.zeros(colour.shape[1], np.float32)
    has_words = np.linalg.norm(v, axis=1) > 0
    vp = _l2((v - mean) @ comps.T) * has_words[:, None]
    col = _l2(colour - colour_mean)
    w = c.colour_weight
    vec = _l2(np.hstack([np.sqrt(w) * col, np.sqrt(1 - w) * vp]).astype(np.float32))
    # For timing only: vecsearch's Encoder has no colour projection (a 128-column matmul per
    # batch, negligible).
    return vec, Encoder(c, centres, mean, comps, raw_mean)


def metrics(name: str, vec: np.ndarray) -> dict[str, float]:
    ds = get_set(name)
    order, _ = ranking(vec, ds.queries)
    return retrieval_metrics(order, ds.groups, ds.queries)


def quality(cand: Candidate) -> dict[str, float]:
    out = {}
    for name in SETS:
        m = metrics(name, encode_set(name, cand)[0])
        out[name] = m
    return {
        "ukb_ns": out["ukbench"]["N-S"],
        "hol_map": out["holidays"]["mAP"],
        "wang_p10": out["wang"]["P@10"],
        "all": out,
    }


class patched_colour:
    """Make vecsearch's encoder use a candidate's colour vector (for timing and --check)."""

    def __init__(self, spec):
        self.spec = spec

    def __enter__(self):
        self.saved = enc_mod.colour_histogram
        spec = self.spec
        enc_mod.colour_histogram = lambda bgr, *a, **k: colour_vector(bgr, spec)

    def __exit__(self, *exc):
        enc_mod.colour_histogram = self.saved


def speed(cand: Candidate, n: int = 400, threads: int = 1) -> float:
    """img/s of Encoder.encode_files on the first n UKBench images (files already in the page cache)."""
    _, encoder = encode_set("ukbench", cand)
    paths = get_set("ukbench").paths[:n]
    old = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        with patched_colour(cand.colour):
            encoder.encode_files(paths[:20])  # warm-up
            best = 0.0
            for _ in range(2):
                t = time.perf_counter()
                encoder.encode_files(paths)
                best = max(best, n / (time.perf_counter() - t))
    finally:
        cv2.setNumThreads(old)
    return best


def check(cand: Candidate) -> dict[str, float]:
    """End to end through Encoder.fit (on the whole set) and encode_files."""
    out = {}
    with patched_colour(cand.colour):
        for name in SETS:
            ds = get_set(name)
            e = Encoder.fit(ds.paths, cand.config)
            out[name] = metrics(name, e.encode_files(ds.paths).vectors)
    return {
        "ukb_ns": out["ukbench"]["N-S"],
        "hol_map": out["holidays"]["mAP"],
        "wang_p10": out["wang"]["P@10"],
    }


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------


def candidates() -> list[Candidate]:
    C = Candidate
    tex = (("hsv16", 1.0), ("hsv_g2", 0.7), ("lbp_g2", 0.7), ("edge_g3", 0.7))
    hsv16 = (("hsv16", 1.0), ("hsv_g2", 1.0))
    w = dict(colour_pca=128, colour_whiten=0.25)
    return [
        C("A  default *"),
        C("B  default, colour on 256px copy", colour=(("hsv", 1.0), ("hsv_g2", 1.0))),
        C("C  default, w=.5", cfg(colour_weight=0.5)),
        C(
            "D  colour_bins=(16,4,4) on 256px copy, w=.5",
            cfg(colour_bins=(16, 4, 4), colour_weight=0.5),
            hsv16,
        ),
        C("E  hsv16+texture, w=.5", cfg(colour_weight=0.5), tex),
        C("F  hsv16+texture, w=.4, 128 centres", cfg(colour_weight=0.4, n_centres=128), tex),
        C("G  hsv16+texture, w=.6, 32 centres", cfg(colour_weight=0.6, n_centres=32), tex),
        C("H  E + colour PCA128 whiten .25", cfg(colour_weight=0.5), tex, **w),
        C(
            "I  E + colour PCA128 whiten .5, w=.4",
            cfg(colour_weight=0.4),
            tex,
            colour_pca=128,
            colour_whiten=0.5,
        ),
        C(
            "I2 E + colour PCA128 whiten .5, w=.5",
            cfg(colour_weight=0.5),
            tex,
            colour_pca=128,
            colour_whiten=0.5,
        ),
        C(
            "I3 I2 at 480/700",
            cfg(colour_weight=0.5, max_side=480, n_features=700),
            tex,
            colour_pca=128,
            colour_whiten=0.5,
        ),
        C("J  H at 512/1000", cfg(colour_weight=0.5, max_side=512), tex, **w),
        C("K  H at 480/1000", cfg(colour_weight=0.5, max_side=480), tex, **w),
        C("L  H at 512/700", cfg(colour_weight=0.5, max_side=512, n_features=700), tex, **w),
        C("M  H at 480/700", cfg(colour_weight=0.5, max_side=480, n_features=700), tex, **w),
        C("N  H at 480/500", cfg(colour_weight=0.5, max_side=480, n_features=500), tex, **w),
        C("O  E at 480/700", cfg(colour_weight=0.5, max_side=480, n_features=700), tex),
        C("P  H at 480/700, w=.4", cfg(colour_weight=0.4, max_side=480, n_features=700), tex, **w),
        C(
            "R  H at 480/700, whiten .375",
            cfg(colour_weight=0.5, max_side=480, n_features=700),
            tex,
            colour_pca=128,
            colour_whiten=0.375,
        ),
        C(
            "S  H at 320/700 (JPEG draft 1/2: no resize)",
            cfg(colour_weight=0.5, max_side=320, n_features=700),
            tex,
            **w,
        ),
        C(
            "T  H at 320/1000, whiten .375  [recommended]",
            cfg(colour_weight=0.5, max_side=320),
            tex,
            colour_pca=128,
            colour_whiten=0.375,
        ),
        C(
            "U  H at 320/700, whiten .375",
            cfg(colour_weight=0.5, max_side=320, n_features=700),
            tex,
            colour_pca=128,
            colour_whiten=0.375,
        ),
        C("V  E at 320/1000 (no colour PCA)", cfg(colour_weight=0.5, max_side=320), tex),
        C(
            "Q  E at 480/700, config-only fallback *",
            cfg(colour_weight=0.5, max_side=480, n_features=700),
            tex,
        ),
    ]


def describe(c: Candidate) -> str:
    d = EncoderConfig()
    diff = {k: v for k, v in c.config.__dict__.items() if getattr(d, k) != v}
    col = "+".join(f"{b}" if w == 1 else f"{w:g}*{b}" for b, w in c.colour)
    extra = f" | colour PCA {c.colour_pca} whiten {c.colour_whiten:g}" if c.colour_pca else ""
    return f"{diff} | {col}{extra}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-speed", action="store_true", help="skip timing")
    ap.add_argument(
        "--check", action="store_true", help="also run Encoder.fit/encode_files end to end for rows marked *"
    )
    ap.add_argument("--only", default="", help="comma-separated row ids (label prefixes), e.g. A,E,T")
    args = ap.parse_args(argv)
    ids = [x for x in args.only.split(",") if x]
    rows = [c for c in candidates() if not ids or c.label.split()[0] in ids]
    print(f"{'#':>3} {'UKB N-S':>7} {'Hol mAP':>7} {'Wang P@10':>9} {'img/s':>6}  label / settings")
    for i, c in enumerate(rows):
        q = quality(c)
        s = "" if args.no_speed else f"{speed(c):6.1f}"
        print(
            f"{i:>3} {q['ukb_ns']:7.3f} {q['hol_map']:7.3f} {q['wang_p10']:9.3f} {s:>6}  {c.label}  "
            f"[{describe(c)}]",
            flush=True,
        )
        if args.check and c.label.endswith("*") and not c.colour_pca:
            e = check(c)
            print(f"    e2e {e['ukb_ns']:7.3f} {e['hol_map']:7.3f} {e['wang_p10']:9.3f}", flush=True)


if __name__ == "__main__":
    main()

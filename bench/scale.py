"""Search at a million vectors: build from vectors, CLI query latency, batch throughput and recall.

    python -m bench.scale [--n 1000000] [--budget 1G 128M] [--runs 10] [--reuse]

Encoding a million real images is out of reach on this machine, so the ~2800 images of UKBench,
Holidays and Wang are encoded for real (trained encoder) and the rest are synthetic: each one a real
vector plus Gaussian noise with the covariance of the real vectors (so it stays on the data's
manifold, which is what IVF and PQ behave differently on, unlike isotropic noise), renormalised.
Most get a noise scale that makes a distinct image (distance like an unrelated pair's), 5% a small
one (a near-duplicate of its source). The real originals keep their real paths so that calibration
can read some images. Replaces the ``scale`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import vecsearch
from bench.results import header, md_table, write_section
from bench.speed import BYTECODE, FLOOR, bytecode, median_walls, vecsearch_command
from vecsearch import vectors as vt
from vecsearch.encoding import encode_batches
from vecsearch.evaluate import load_labelled_set

SETS = ("ukbench", "holidays", "wang")
BATCH = 50_000
NEAR_DUP_SHARE = 0.05


def real_vectors(data: Path, work: Path) -> tuple[list[str], np.ndarray, vecsearch.Encoder]:
    """Train an encoder on the real images and encode them (cached in ``work``)."""
    paths = [p for s in SETS for p in load_labelled_set(data / s).paths]
    enc_file, cache = work / "encoder.npz", work / "real.npz"
    if not enc_file.exists():
        t = time.perf_counter()
        vecsearch.train(paths, enc_file)
        print(f"train encoder: {time.perf_counter() - t:.0f}s", file=sys.stderr)
    enc = vecsearch.Encoder.load(enc_file)
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if str(z["fingerprint"]) == enc.fingerprint():
            return list(z["paths"]), z["vectors"], enc
    t = time.perf_counter()
    tasks = ((i, paths[s : s + 64]) for i, s in enumerate(range(0, len(paths), 64)))
    parts = dict(encode_batches(enc, tasks))
    good = [p for k in sorted(parts) for p in (i.path for i in parts[k].infos)]
    vecs = np.concatenate([parts[k].vectors for k in sorted(parts)])
    print(f"encode {len(good)} images: {time.perf_counter() - t:.0f}s", file=sys.stderr)
    np.savez(cache, paths=np.array(good), vectors=vecs, fingerprint=enc.fingerprint())
    return good, vecs, enc


class Perturber:
    """Noise ~ N(0, Σ) with Σ the real vectors' covariance (top 256 components exact, rest isotropic)."""

    def __init__(self, real: np.ndarray, components: int = 256, mix: bool = False):
        self.real, self.mix = real, mix
        centred = real - real.mean(0)
        _, s, vt_ = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
        var = s**2 / (len(real) - 1)
        self.basis = (np.sqrt(var[:components])[:, None] * vt_[:components]).astype(np.float32)
        self.iso = float(np.sqrt(var[components:].sum() / real.shape[1]))

    def make(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vectors, source rows, squared distance to the source) for n new vectors."""
        src = rng.integers(0, len(self.real), n)
        near = rng.random(n) < NEAR_DUP_SHARE
        scale = np.where(near, rng.uniform(0.05, 0.3, n), rng.uniform(0.5, 1.0, n)).astype(np.float32)
        noise = rng.standard_normal((n, len(self.basis)), dtype=np.float32) @ self.basis
        noise += self.iso * rng.standard_normal(noise.shape, dtype=np.float32)
        base = self.real[src]
        if self.mix:  # a point between two real images (the near-duplicates stay next to their source)
            other = self.real[rng.integers(0, len(self.real), n)]
            alpha = np.where(near, 1.0, rng.uniform(0.5, 1.0, n)).astype(np.float32)[:, None]
            base = alpha * base + (1 - alpha) * other
            scale = np.where(near, scale, scale * 0.6)
        v = base + scale[:, None] * noise
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v, src, ((v - self.real[src]) ** 2).sum(1)


def write_vectors(
    out: Path, npy: Path, n: int, paths: list[str], real: np.ndarray, enc, mix: bool, seed: int = 0
) -> np.ndarray:
    """Write n vectors (the real ones first, under their real paths) as vector Parquet, in row
    batches, plus a float32 .npy copy for exact ground truth; returns each synthetic row's d² to its
    source."""
    rng = np.random.default_rng(seed)
    pert = Perturber(real, mix=mix)
    schema = vt.schema(enc)
    all_vecs = np.lib.format.open_memmap(npy, "w+", np.float32, (n, enc.dim))
    d2s = []
    tmp = out.with_name(out.name + ".tmp")
    with pq.ParquetWriter(tmp, schema, compression="snappy") as w:
        for start in range(0, n, BATCH):
            stop = min(n, start + BATCH)
            if start == 0:
                synth, _, d2 = pert.make(max(0, stop - len(real)), rng)
                v = np.concatenate([real, synth])[:stop]
                d2s.append(d2)
                names = paths + [f"/synthetic/{i:07d}.jpg" for i in range(len(real), stop)]
            else:
                v, _, d2 = pert.make(stop - start, rng)
                d2s.append(d2)
                names = [f"/synthetic/{i:07d}.jpg" for i in range(start, stop)]
            all_vecs[start:stop] = v
            cols = {
                "path": pa.array(names),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel(), pa.float32()), enc.dim),
            }
            w.write_table(
                pa.Table.from_arrays(
                    [cols.get(f.name, pa.nulls(stop - start, f.type)) for f in schema], schema=schema
                )
            )
    all_vecs.flush()
    os.replace(tmp, out)
    return np.concatenate(d2s) if d2s else np.zeros(0)


def run_cli(*args: str) -> tuple[float, str, str, float]:
    """Wall seconds, stdout, stderr and peak RSS in GiB of one ``vecsearch`` process (its own,
    from os.wait4: RUSAGE_CHILDREN would give the largest of every child so far)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([*vecsearch_command(), *args], stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"vecsearch {' '.join(args)} failed: {stderr[-2000:]}")
    return wall, stdout, stderr, usage.ru_maxrss / 2**20


def ground_truth(queries: np.ndarray, npy: Path, k: int = 10) -> np.ndarray:
    """Exact k-NN row numbers (= index ids) by streaming faiss.IndexFlatL2 over the vectors."""
    from faiss.contrib.exhaustive_search import knn_ground_truth

    x = np.load(npy, mmap_mode="r")
    _, gt = knn_ground_truth(
        queries, (np.ascontiguousarray(x[s : s + 100_000]) for s in range(0, len(x), 100_000)), k
    )
    return gt


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))


def measure_index(
    label: str,
    index_dir: Path,
    vectors: Path,
    enc_file: Path,
    budget: str | None,
    queries,
    truth,
    reuse: bool,
) -> dict:
    """Build (timed, CLI), info, bytes/image, batch QPS and recall@10 for one index configuration."""
    built = (index_dir / "manifest.json").exists() and reuse
    t_build, peak = None, None
    if built and index_dir.with_suffix(".build.json").exists():  # the figures of the run that built it
        t_build, peak = (
            json.loads(index_dir.with_suffix(".build.json").read_text()).get(k) for k in ("build", "peak_gb")
        )
    if not built:
        shutil.rmtree(index_dir, ignore_errors=True)
        args = ["build", "--vectors", str(vectors), "--encoder", str(enc_file), "--index", str(index_dir)]
        if budget:
            args += ["--memory-budget", budget]
        t_build, _, err, peak = run_cli(*args)
        index_dir.with_suffix(".build.json").write_text(json.dumps({"build": t_build, "peak_gb": peak}))
        print(
            f"[{label}] build {t_build:.0f}s; {err.strip().splitlines()[-1] if err.strip() else ''}",
            file=sys.stderr,
        )
    info = json.loads(run_cli("info", "--index", str(index_dir), "--format", "json")[1])
    idx = vecsearch.open(index_dir)
    size = idx.version.file("index").stat().st_size
    rerank_size = idx.rerank_rows.path.stat().st_size if idx.rerank_rows is not None else 0
    # Warm the page cache (mmap'd lists, re-rank rows, metadata), as a live server's would be: both
    # timings below see it warm.
    idx.search_vectors(queries, k=10)
    t0 = time.perf_counter()
    hits = idx.search_vectors(queries, k=10)
    t_search = time.perf_counter() - t0
    found = np.array([[h.id for h in q] + [-1] * (10 - len(q)) for q in hits])
    t0 = time.perf_counter()
    idx.faiss.search(queries, 10)
    t_raw = time.perf_counter() - t0
    ix = info["index"]
    res = dict(
        label=label,
        build=t_build,
        peak_gb=peak,
        factory=ix["factory"],
        nlist=ix["nlist"],
        nprobe=ix["nprobe"],
        build_recall=ix.get("recall_at_10"),
        bytes_per_image=size / info["images"],
        images=info["images"],
        rerank_bytes=rerank_size / info["images"],
        qps=len(queries) / t_search,
        qps_raw=len(queries) / t_raw,
        recall=recall_at(found, truth),
        info=info,
        idx=idx,
    )
    print(
        f"[{label}] {res['factory']} nprobe {res['nprobe']} build-recall {res['build_recall']}; "
        f"{res['bytes_per_image']:.0f} B/image; "
        f"search_vectors {res['qps']:.0f} q/s (raw faiss {res['qps_raw']:.0f} q/s), recall@10 "
        f"{res['recall']:.3f}",
        file=sys.stderr,
    )
    return res


def code_note() -> str:
    """Which vecsearch code ran (a snapshot outside the repo when the working tree was being edited)."""
    return f"- vecsearch code: `{Path(vecsearch.__file__).parent}`\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "scale")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument(
        "--budget", nargs="*", default=[], help="also build with these --memory-budget values (e.g. 1G 512M)"
    )
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument(
        "--model",
        choices=("noise", "mix"),
        default="noise",
        help="noise: real vector + noise (clouds around 2811 sources, easy for IVF); "
        "mix: between two real vectors + noise",
    )
    ap.add_argument("--reuse", action="store_true", help="reuse vectors and indexes already built in --work")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started, t_all = (
        header(f"Search at scale (bench/scale.py, --model {args.model})") + code_note(),
        time.perf_counter(),
    )

    paths, real, enc = real_vectors(args.data, args.work)
    tag = f"{args.n}" if args.model == "noise" else f"{args.n}-{args.model}"
    vec_file, npy, d2_file = (
        args.work / f"{name}-{tag}.{ext}"
        for name, ext in (("vectors", "parquet"), ("vectors", "npy"), ("d2", "npy"))
    )
    if not (args.reuse and vec_file.exists() and npy.exists() and d2_file.exists()):
        t = time.perf_counter()
        np.save(d2_file, write_vectors(vec_file, npy, args.n, paths, real, enc, args.model == "mix"))
        print(
            f"generate + write {args.n} vectors: {time.perf_counter() - t:.0f}s, "
            f"{vec_file.stat().st_size / 2**30:.2f} GiB",
            file=sys.stderr,
        )
    d2 = np.load(d2_file)

    queries, _, _ = Perturber(real, mix=args.model == "mix").make(
        1000, np.random.default_rng(99)
    )  # fresh vectors, not in the index
    t, gt_file = time.perf_counter(), args.work / f"truth-{tag}.npy"
    truth = np.load(gt_file) if args.reuse and gt_file.exists() else ground_truth(queries, npy)
    np.save(gt_file, truth)
    t_gt = time.perf_counter() - t
    print(f"exact ground truth for 1000 queries: {t_gt:.0f}s", file=sys.stderr)

    enc_file = args.work / "encoder.npz"
    results = [
        measure_index(
            "raw vectors", args.work / f"index-{tag}", vec_file, enc_file, None, queries, truth, args.reuse
        )
    ]
    failures = []
    for b in args.budget:
        t, failed = time.perf_counter(), args.work / f"index-{tag}-{b}.failed.txt"
        if args.reuse and failed.exists():  # not worth minutes again: the failure of the run that tried
            failures.append(failed.read_text())
            continue
        try:
            results.append(
                measure_index(
                    f"--memory-budget {b}",
                    args.work / f"index-{tag}-{b}",
                    vec_file,
                    enc_file,
                    b,
                    queries,
                    truth,
                    args.reuse,
                )
            )
        except RuntimeError as e:  # a failed build is a result too
            failures.append(
                f"`--memory-budget {b}`: the build failed after {time.perf_counter() - t:.0f} s: "
                f"`{str(e).splitlines()[-1][-300:]}`"
            )
            failed.write_text(failures[-1])
            print(failures[-1], file=sys.stderr)

    # One query process per index, alternating with the import floor so that load changes hit all alike.
    with bytecode(cached=True) as env:
        walls = median_walls(
            [[sys.executable, "-c", FLOOR]]
            + [[*vecsearch_command(), "query", paths[0], "--index", str(r["idx"].path)] for r in results],
            args.runs,
            env,
        )
    t_floor = walls[0]
    for r, t in zip(results, walls[1:]):
        r["query"] = t
        print(
            f"[{r['label']}] CLI query {t * 1000:.0f} ms vs import floor {t_floor * 1000:.0f} ms",
            file=sys.stderr,
        )
    cal = results[0]["info"]["calibration"]
    fmt = lambda x, f: "(reused)" if x is None else format(x, f)  # noqa: E731
    text = started + (
        f"\n{args.n:,} vectors of dimension {enc.dim}: {len(real)} real images (UKBench, Holidays, Wang, "
        "trained encoder) plus "
        f"{args.n - len(real):,} synthetic ones (a real vector + Gaussian noise with the real vectors' "
        "covariance, renormalised; "
        f"{NEAR_DUP_SHARE:.0%} with a small scale); median d² to the source {np.median(d2):.3f}. "
        f"Calibration of the raw-vector index: {cal.get('positives')} positives, {cal.get('negatives')} "
        "negatives (it samples 200 of "
        f"all indexed paths, of which only ~{200 * len(real) / args.n:.1f} are expected to be real readable "
        "images; below 10 the "
        "example photos stand in).\n\n"
        + md_table(
            [
                "index",
                "`vecsearch build --vectors` wall",
                "peak RSS",
                "faiss index (info)",
                "nlist",
                "nprobe",
                "recall@10 (build)",
                "index bytes/image (RAM)",
                "re-rank file bytes/image (disk)",
                "`search_vectors` q/s (1000 queries, k=10)",
                "raw faiss q/s (no re-ranking)",
                "recall@10 vs exact (1000 fresh queries)",
                f"one `vecsearch query` process, median of {args.runs}",
            ],
            [
                [
                    r["label"],
                    fmt(r["build"], ".0f") + " s",
                    (
                        fmt(r["peak_gb"], ".1f") + " GiB"
                        if r["peak_gb"] is not None or r["build"] is None
                        else "not recorded"
                    ),
                    r["factory"],
                    r["nlist"],
                    r["nprobe"],
                    f"{r['build_recall']:.3f}",
                    f"{r['bytes_per_image']:.0f}",
                    f"{r['rerank_bytes']:.0f}" if r["rerank_bytes"] else "",
                    f"{r['qps']:.0f}",
                    f"{r['qps_raw']:.0f}",
                    f"{r['recall']:.3f}",
                    f"{1000 * r['query']:.0f} ms ({r['query'] / t_floor:.2f}x the floor)",
                ]
                for r in results
            ],
        )
        + "".join(f"\n{f}\n" for f in failures)
        + f'\nImport floor `python -c "{FLOOR}"`, median of {args.runs}: {1000 * t_floor:.0f} ms (the query '
        f"processes alternate with it; {BYTECODE[True]}; bench/speed.py has both kinds).\n"
        + "\nExact ground truth (faiss `knn_ground_truth`, streamed IndexFlatL2) for 1000 queries: "
        f"{t_gt:.0f} s{' (cached)' if t_gt < 5 else ''}. "
        "Build wall and peak RSS (of the build process and the workers it waited for) are those of the run "
        "that built the index. "
        f"Whole run: {time.perf_counter() - t_all:.0f} s. Load average at the end: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.\n"
    )
    print(text)
    write_section("scale" if args.model == "noise" else f"scale-{args.model}", text)


if __name__ == "__main__":
    main()

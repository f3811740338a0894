import numpy as np
import pytest

from vecsearch import ivf as vi
from vecsearch import rerank
from vecsearch.sizes import parse_bytes


def _clustered(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, d))
    x = centres[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_neighbours(queries, chunks):
    """Exact neighbours as positions among the chunks, gathered as a build gathers them."""
    truth, start = vi.ExactNeighbours(queries), 0
    for c in chunks:
        truth.add(c, np.arange(start, start + len(c)))
        start += len(c)
    return truth.ids()


def test_choice_follows_size_and_memory_budget():
    assert vi.choose(1000, 832).exhaustive
    assert vi.choose(100_000, 832).factory.endswith(",Flat") and vi.choose(100_000, 832).nlist > 1
    assert vi.choose(2_000_000, 832, parse_bytes("4G")).factory.endswith(",SQ8")
    assert vi.choose(2_000_000, 832, parse_bytes("4G")).nlist == 2048
    assert ",PQ" in vi.choose(2_000_000, 832, parse_bytes("1G")).factory


@pytest.mark.slow
@pytest.mark.parametrize("budget, codes", [("3M", "SQ8"), ("1M", "PQ")])
def test_compressed_indexes_take_ids_and_reach_their_recall(budget, codes, tmp_path):
    x = _clustered(21_000, 64)
    spec = vi.choose(len(x), 64, parse_bytes(budget))
    assert codes in spec.factory
    index = vi.create(spec, 64, x[: vi.train_size(spec)])
    vi.add(index, x, np.arange(len(x)) + 10)
    _nprobe, recall = vi.tune_nprobe(index, x[:200], exact_neighbours(x[:200], [x]) + 10)
    assert recall > (0.9 if codes == "SQ8" else 0.5)
    stored = vi.reconstruct(index, [10 + 5, 10 + 7])  # decoded codes: near the vectors, not equal
    assert stored.shape == (2, 64) and 0 < np.abs(stored - x[[5, 7]]).max() < (
        0.05 if codes == "SQ8" else 1.0
    )
    assert bool(spec.rerank) == (codes == "PQ")
    if spec.rerank:  # PQ ranking is what limits its recall (nprobe went up to nlist): re-ranking lifts it
        rows = rerank.create(tmp_path / "r.npy", len(x) + 10, 64)
        rows[np.arange(len(x)) + 10] = x
        rows.flush()
        exact = rerank.Vectors(tmp_path / "r.npy")
        _, reranked = vi.tune_nprobe(index, x[:200], exact_neighbours(x[:200], [x]) + 10, rows=exact)
        assert reranked >= vi.TARGET_RECALL > recall
        d, found = vi.search(index, x[:5] + 0.01, 3, exact)
        assert np.allclose(
            d, ((x[found - 10] - (x[:5, None] + 0.01)) ** 2).sum(2), atol=2e-3
        )  # exact distances
        assert np.array_equal(
            vi.reconstruct(index, [10, 17], exact), x[[0, 7]].astype(np.float16).astype(np.float32)
        )
    assert vi.remove(index, [10, 11]) == 2 and index.ntotal == len(x) - 2
    vi.save(index, tmp_path / "c.faiss")
    assert vi.load(tmp_path / "c.faiss").ntotal == len(x) - 2
    assert parse_bytes("512M") == 512 * 2**20 and parse_bytes("1.5GB") == int(1.5 * 2**30)
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes("lots")


def test_ivf_tuned_to_target_recall_with_arbitrary_ids(tmp_path):
    x = _clustered(30_000, 64)
    ids = np.arange(len(x), dtype=np.int64) * 7 + 3
    spec = vi.choose(len(x), 64)
    index = vi.create(spec, 64, x[: vi.train_size(spec)])
    vi.add(index, x, ids)
    queries = x[:300]
    gt_pos = exact_neighbours(queries, np.array_split(x, 5))
    nprobe, recall = vi.tune_nprobe(index, queries, ids[gt_pos])
    assert np.array_equal(
        vi.reconstruct(index, ids[[4, 0, 29_999]]), x[[4, 0, 29_999]]
    )  # Flat codes are the vectors
    assert recall >= vi.TARGET_RECALL and nprobe < spec.nlist
    vi.save(index, tmp_path / "i.faiss")
    loaded = vi.load(tmp_path / "i.faiss")
    vi.set_nprobe(loaded, nprobe)
    d, found = vi.search(loaded, queries[:5], 3)
    assert list(found[:, 0]) == list(ids[:5]) and np.allclose(d[:, 0], 0, atol=1e-5)


def test_exact_index_removes_by_id():
    x = _clustered(500, 32)
    index = vi.create(vi.choose(500, 32), 32, x)
    vi.add(index, x, np.arange(500) + 1000)
    assert vi.remove(index, [1000, 1001, 99]) == 2
    _, found = vi.search(index, x[:2], 1)
    assert 1000 not in found and 1001 not in found and index.ntotal == 498

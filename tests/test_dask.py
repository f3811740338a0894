"""A real Dask LocalCluster (worker processes): the cluster path gives what the local one gives."""

import warnings

import pyarrow.parquet as pq
import pytest

import vecsearch

distributed = pytest.importorskip("distributed")
dask_bag = pytest.importorskip("dask.bag")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        yield c


def _results(index, queries):
    return [[(h.path, round(h.distance, 4)) for h in hits] for hits in index.search_many(queries, k=5)]


def test_build_on_a_cluster_equals_in_process(cluster, tmp_path, photo_dir, built, examples):
    on_cluster = vecsearch.build(
        [photo_dir],
        tmp_path / "idx",
        encoder=built.path,
        scheduler=cluster.scheduler_address,
        batch_size=3,
        quiet=True,
    )
    assert on_cluster.metadata()["path"].to_pylist() == built.metadata()["path"].to_pylist()
    assert _results(on_cluster, examples) == _results(built, examples)
    assert (
        on_cluster.calibration.to_json() == built.calibration.to_json()
    )  # its copies were encoded on the cluster too


def test_dask_bag_pipeline_to_parquet_then_index(cluster, tmp_path, photo_dir, built, examples):
    """What the README shows: encode partitions on the cluster into Parquet parts, index them here."""
    import dask

    paths = sorted(str(p) for p in photo_dir.rglob("*.jpg"))
    encoder = dask.delayed(vecsearch.Encoder.load)(str(built.path))  # loaded by one task, shared by all
    out = tmp_path / "vectors"
    out.mkdir()

    def encode_partition(part, enc, number=None):
        t = enc.encode_table(list(part))
        pq.write_table(t, out / f"part-{abs(hash(tuple(part))):x}.parquet")
        return [len(t)]

    with distributed.Client(cluster), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        counts = (
            dask_bag.from_sequence(paths, npartitions=3).map_partitions(encode_partition, encoder).compute()
        )
    assert sum(counts) == len(paths) and len(list(out.glob("*.parquet"))) == 3
    # The encoder's arrays (16 MB) stay out of the task graph, which Dask warns about above 10 MB.
    assert not [w for w in warned if "large graph" in str(w.message)], [str(w.message) for w in warned]
    index = vecsearch.build(None, tmp_path / "idx", vectors=out, encoder=built.path, quiet=True)
    assert sorted(index.metadata()["path"].to_pylist()) == sorted(built.metadata()["path"].to_pylist())
    got = {q: [(p, d) for p, d in r] for q, r in zip(examples, _results(index, examples))}
    want = {q: [(p, d) for p, d in r] for q, r in zip(examples, _results(built, examples))}
    assert got == want

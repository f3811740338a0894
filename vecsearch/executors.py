"""Run the encoder over batches of files: in-process, in a local process pool, or on a Dask cluster.

All three take the same (batch number, paths) tasks and yield (batch number, EncodedFiles) as they
finish, keeping only a bounded number of batches in flight so memory does not grow with N. The
encoder is shipped to each worker once: pool workers load it from its .npz file, Dask workers get
it scattered (broadcast) once.
"""
from __future__ import annotations

import itertools
import os
import logging
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator

import numpy as np

from .encoder import EncodedFiles, Encoder

log = logging.getLogger(__name__)

Task = tuple[int, list[str]]

_worker_encoder: Encoder | None = None


def _init_worker(encoder_path: str) -> None:
    global _worker_encoder
    import cv2

    cv2.setNumThreads(1)  # one process per core already; threads inside would oversubscribe
    _worker_encoder = Encoder.load(encoder_path)


def _encode_in_worker(task: Task) -> tuple[int, EncodedFiles]:
    assert _worker_encoder is not None
    return task[0], _worker_encoder.encode_files(task[1])


def _encode_with(encoder: Encoder, task: Task) -> tuple[int, EncodedFiles]:
    return task[0], encoder.encode_files(task[1])


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run(encoder: Encoder, encoder_path: str, tasks: Iterable[Task], workers: int | None = None, scheduler=None) -> Iterator[tuple[int, EncodedFiles]]:
    """Encode every task; ``workers=0`` runs in this process, ``scheduler`` names a Dask scheduler."""
    if scheduler:
        yield from _run_dask(encoder, tasks, scheduler)
    elif workers == 0:
        for task in tasks:
            yield _encode_with(encoder, task)
    else:
        yield from _run_pool(encoder_path, encoder.dim, tasks, workers or default_workers())


def _pool(encoder_path: str, workers: int) -> ProcessPoolExecutor:
    import multiprocessing as mp

    # forkserver: forking a process that already runs OpenMP (faiss) threads can deadlock.
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver"), initializer=_init_worker, initargs=(encoder_path,))


def _run_pool(encoder_path: str, dim: int, tasks: Iterable[Task], workers: int) -> Iterator[tuple[int, EncodedFiles]]:
    """A local process pool; if a worker dies (a decoder crash, the OOM killer), the batches it may
    have held are re-run alone, split until the file that kills a worker is found and reported."""
    todo = iter(tasks)
    while True:
        pool = _pool(encoder_path, workers)
        running: dict = {}
        try:
            for task in itertools.islice(todo, 2 * workers):
                running[pool.submit(_encode_in_worker, task)] = task
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    result = fut.result()
                    del running[fut]
                    yield result
                    for task in itertools.islice(todo, 1):
                        running[pool.submit(_encode_in_worker, task)] = task
            pool.shutdown()
            return
        except BrokenProcessPool:
            pool.shutdown(wait=False, cancel_futures=True)
            log.warning("a worker process died; re-running its %d batches one by one", len(running))
            for number, paths in running.values():
                yield number, _salvage(encoder_path, dim, paths)


def _salvage(encoder_path: str, dim: int, paths: list[str]) -> EncodedFiles:
    with _pool(encoder_path, 1) as alone:
        try:
            return alone.submit(_encode_in_worker, (0, paths)).result()[1]
        except BrokenProcessPool:
            pass
    if len(paths) == 1:
        return EncodedFiles(np.zeros((0, dim), np.float32), [], [(paths[0], "a worker process died while decoding this file")])
    half = len(paths) // 2
    a, b = _salvage(encoder_path, dim, paths[:half]), _salvage(encoder_path, dim, paths[half:])
    return EncodedFiles(np.vstack([a.vectors, b.vectors]), a.infos + b.infos, a.failures + b.failures)


def _run_dask(encoder: Encoder, tasks: Iterable[Task], scheduler) -> Iterator[tuple[int, EncodedFiles]]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise RuntimeError("--scheduler needs dask.distributed: pip install 'vecsearch[dask]'") from None
    own = not isinstance(scheduler, Client)
    client = Client(scheduler, set_as_default=False) if own else scheduler
    try:
        in_flight = 2 * max(1, sum(client.nthreads().values()))
        shipped = client.scatter(encoder, broadcast=True)
        todo = iter(tasks)
        with client.as_current():  # as_completed looks for the current client
            running = as_completed([client.submit(_encode_with, shipped, t, pure=False) for t in itertools.islice(todo, in_flight)])
        for fut in running:
            yield fut.result()
            nxt = next(todo, None)
            if nxt is not None:
                running.add(client.submit(_encode_with, shipped, nxt, pure=False))
    finally:
        if own:
            client.close()

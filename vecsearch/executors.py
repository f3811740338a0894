"""Run a function over batches of files: in-process, in a local process pool, or on a Dask cluster.

All three take (batch number, paths) tasks and yield (batch number, result) as they finish, keeping
only a bounded number of batches in flight so memory does not grow with N. The ``shared`` object
(an encoder, or an encoder config while training) reaches each worker once: pool workers receive
it in their initializer, Dask workers by one broadcast scatter.

Worker processes start through forkserver, which imports the caller's ``__main__``: a script that
calls vecsearch must do so under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

log = logging.getLogger(__name__)

Task = tuple[int, list[str]]
Work = Callable[[Any, list[str]], Any]

_shared: Any = None
#: What a worker's death looks like from here: a broken pool, or a broken pipe while it starts.
DIED = (BrokenProcessPool, BrokenPipeError, EOFError)


def one_thread_per_call() -> None:
    """OpenCV and BLAS each on one thread, for a process that already runs one worker per core:
    their own threads would oversubscribe the cores (and OpenBLAS's spin while they wait)."""
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(1)


def _init_worker(shared: Any, parent: int) -> None:
    global _shared
    # The environment set in _pool does not reach workers of a process server started earlier.
    one_thread_per_call()
    _shared = shared
    _end_with(parent)


def _end_with(parent: int) -> None:
    """Exit when the process that made the pool exits, however it dies. Workers are children of the
    forkserver, not of that process, and would otherwise wait on their task queue for ever after a
    SIGKILL (the OOM killer), keeping the resource tracker alive too."""
    import select
    import threading

    def watch() -> None:
        try:
            fd = os.pidfd_open(parent)
        except (AttributeError, OSError):  # no pidfd (old kernel or not Linux): poll
            while _alive(parent):
                time.sleep(1.0)
        else:
            select.select([fd], [], [])  # readable once the process has exited
        os._exit(1)

    if _alive(parent):
        threading.Thread(target=watch, name="vecsearch-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_worker(work: Work, task: Task) -> tuple[int, Any]:
    return task[0], work(_shared, task[1])


def _run_task(work: Work, shared: Any, task: Task) -> tuple[int, Any]:
    return task[0], work(shared, task[1])


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run(
    work: Work,
    shared: Any,
    tasks: Iterable[Task],
    workers: int | None = None,
    scheduler=None,
    on_crash: Callable[[str], Any] | None = None,
) -> Iterator[tuple[int, Any]]:
    """``work(shared, paths)`` for every task; ``workers=0`` runs here, ``scheduler`` on Dask.

    ``on_crash(path)`` gives the result for a file that kills a pool worker every time it is tried
    (a decoder crash); without it such a file ends the run with an error.
    """
    if scheduler:
        yield from _run_dask(work, shared, tasks, scheduler)
    elif workers == 0:
        for task in tasks:
            yield _run_task(work, shared, task)
    else:
        yield from _run_pool(work, shared, tasks, workers or default_workers(), on_crash)


def _modules(work: Work) -> list[str]:
    """The modules a task's unpickling imports: those of the work function and of its bound
    arguments (a ``functools.partial``)."""
    if isinstance(work, functools.partial):
        return [work.func.__module__, *(type(v).__module__ for v in work.keywords.values())]
    return [work.__module__]


def _pool(work: Work, shared: Any, workers: int) -> ProcessPoolExecutor:
    import multiprocessing as mp

    # One BLAS/OpenMP thread per worker process: the processes already fill the cores.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    ctx = mp.get_context("forkserver")  # forking a process that runs OpenMP threads can deadlock
    # Workers fork from a server that has imported the work's modules once: a pool starts in ~60 ms,
    # not ~450. (The preload of the server's first start holds for the life of this process.)
    ctx.set_forkserver_preload([m for m in _modules(work) if m.startswith("vecsearch.")])
    return ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(shared, os.getpid())
    )


def _run_pool(
    work: Work, shared: Any, tasks: Iterable[Task], workers: int, on_crash
) -> Iterator[tuple[int, Any]]:
    """A local process pool. If a worker dies (a decoder crash, the OOM killer), the batches it may
    have held are re-run alone, split until the file that kills a worker is found."""
    todo = iter(tasks)
    while True:
        pool = _pool(work, shared, workers)
        running: dict = {}  # future → task
        held: list[Task] = []  # taken from todo but not yet known to be running
        try:
            yield from _drain(pool, work, todo, running, held, 2 * workers)
            pool.shutdown()
            return
        except DIED:
            _kill_workers(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            _check_workers_start(work, shared)
            lost = sorted(list(running.values()) + held)
            log.warning("a worker process died; re-running its %d batches one by one", len(lost))
            for number, paths in lost:
                yield number, _salvage(work, shared, paths, on_crash)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill a broken pool's surviving workers. The pool terminates those it knows of, but a worker
    spawned by a submit that raced the break escapes it, and then blocks for ever sending its
    result, which no one reads, while the pool's manager thread waits for it to exit: the process
    hung at exit (seen once in CI, Python 3.11). Their batches are re-run anyway."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


def _drain(pool, work: Work, todo: Iterator[Task], running: dict, held: list[Task], in_flight: int):
    """Keep ``in_flight`` tasks running on the pool and yield their results as they finish."""

    def submit(n: int) -> None:
        for task in itertools.islice(todo, n):
            held.append(task)
            running[_submit(pool, work, task)] = task
            held.pop()

    submit(in_flight)
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            result = fut.result()
            del running[fut]
            yield result
            submit(1)


def _submit(pool: ProcessPoolExecutor, work: Work, task: Task):
    """``pool.submit``, where a pool that breaks during the call says so. Python 3.11 marks a pool
    broken and closes its task queue without the lock ``submit`` holds, so a submit that is
    starting a worker just then fails pickling the closed queue ("handle is closed"): a worker's
    death all the same (seen in CI when a test killed a worker)."""
    try:
        return pool.submit(_in_worker, work, task)
    except OSError as error:
        if getattr(pool, "_broken", None):
            raise BrokenProcessPool(pool._broken) from error
        raise


def _check_workers_start(work: Work, shared: Any) -> None:
    """Tell a worker that dies on a file from workers that cannot start at all (then say why)."""
    with _pool(work, shared, 1) as probe:
        try:
            probe.submit(_in_worker, work, (0, [])).result()
        except DIED:
            raise RuntimeError(
                "worker processes die as they start. If vecsearch is called from a script, the call must be "
                'under `if __name__ == "__main__":` (workers import the script); or use workers=0'
            ) from None


def _salvage(work: Work, shared: Any, paths: list[str], on_crash) -> Any:
    with _pool(work, shared, 1) as alone:
        try:
            return alone.submit(_in_worker, work, (0, paths)).result()[1]
        except DIED:
            pass
    if len(paths) == 1:
        if on_crash is None:
            raise RuntimeError(
                f"{paths[0]}: a worker process dies on this file (if this is a script: "
                'is the call to vecsearch under `if __name__ == "__main__":`?)'
            )
        return on_crash(paths[0])
    half = len(paths) // 2
    # Results of parts of a batch add up (lists, or EncodedFiles, which define +).
    return _salvage(work, shared, paths[:half], on_crash) + _salvage(work, shared, paths[half:], on_crash)


def _run_dask(work: Work, shared: Any, tasks: Iterable[Task], scheduler) -> Iterator[tuple[int, Any]]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise RuntimeError("--scheduler needs dask.distributed: pip install 'vecsearch[dask]'") from None
    own = not isinstance(scheduler, Client)
    client = Client(scheduler, set_as_default=False) if own else scheduler
    try:
        in_flight = 2 * max(1, sum(client.nthreads().values()))
        shipped = client.scatter(shared, broadcast=True)
        todo = iter(tasks)
        with client.as_current():  # as_completed looks for the current client
            running = as_completed(
                [
                    client.submit(_run_task, work, shipped, t, pure=False)
                    for t in itertools.islice(todo, in_flight)
                ]
            )
        for fut in running:
            yield fut.result()
            nxt = next(todo, None)
            if nxt is not None:
                running.add(client.submit(_run_task, work, shipped, nxt, pure=False))
    finally:
        if own:
            client.close()

"""Progress of the long stages of a job: a tqdm bar on a terminal, and a log line when a stage ends.

Each stage (scan, train, encode, index, calibrate, commit, ...) logs what it did at INFO on the
``vecsearch`` logger: how many items, in how long, at what rate; so a build run from cron or on a
cluster, where no bar is drawn, still says what it did. Items done by an earlier, interrupted run
(a resumed build) are shown on the bar but kept out of the rate. Each record also carries the
figures as attributes (``stage``, ``seconds``, ``done``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

log = logging.getLogger("vecsearch")


class Stage:
    """One running stage: ``update(n)`` as items are done; ``unit`` is their plural name."""

    def __init__(self, name: str, total: int | None, unit: str, quiet: bool):
        self.name, self.unit = name, unit
        self.done = 0
        self.resumed = 0
        self.started = time.perf_counter()
        from tqdm import tqdm  # not on a query's path: 20 ms of a process start

        self.bar = tqdm(
            total=total,
            desc=name,
            unit=f" {unit}",
            disable=True if quiet else None,  # None: off when stderr is not a terminal
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
            leave=False,
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        self.bar.update(n)

    def resume(self, n: int) -> None:
        """``n`` items that an earlier, interrupted run already did (said at once in the log)."""
        if n:
            total = f" of {self.bar.total}" if self.bar.total else ""
            log.info("%s: resuming: %d%s %s were done by an earlier run", self.name, n, total, self.unit)
        self.resumed += n
        self.bar.update(n)

    def describe(self, what: str) -> None:
        """Say on the bar what the stage is doing now (a step the count does not show)."""
        self.bar.set_description_str(f"{self.name}: {what}")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> str:
        s = self.seconds
        rate = (
            f", {self.done / s:.0f} {self.unit}/s" if s >= 1 and self.done else ""
        )  # a shorter one is noise
        resumed = f" (and {self.resumed} from an earlier run)" if self.resumed else ""
        return f"{self.name}: {self.done} {self.unit}{resumed} in {s:.1f} s{rate}"


@contextlib.contextmanager
def stage(
    name: str, total: int | None = None, *, unit: str = "images", quiet: bool = False
) -> Iterator[Stage]:
    """Run one stage: a bar while it runs, and its summary logged at INFO when it ends having done
    something (a stage that fails or finds nothing leaves the saying to the error that follows)."""
    st = Stage(name, total, unit, quiet)
    try:
        yield st
    finally:
        st.bar.close()
    if st.done or st.resumed:
        # The figures go with the record too, for programs that watch a job (bench/throughput.py).
        log.info(st.summary(), extra={"stage": st.name, "seconds": st.seconds, "done": st.done})

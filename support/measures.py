"""The measures every benchmark takes: percentiles, a process's RSS and CPU seconds."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(samples: Iterable[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 to 1) of `samples`, one of them."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (every thread of it); 0 for one that is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces; fields follow it
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def tree_rss_kb(pid: int) -> int:
    """RSS of `pid` and its children (a server's processes under their parent), in KB."""
    pids = [pid, *(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    return sum(rss_kb(p) for p in pids)


class PeakRss:
    """`pid`'s highest RSS (KB) during the block; `trace`: each `trace_every` window's (s, MB)."""

    def __init__(
        self, pid: int, start: int | None = None, trace_every: float | None = None
    ) -> None:
        self.pid, self.trace_every = pid, trace_every
        self.peak = rss_kb(pid) if start is None else start
        self.samples = 1
        self.trace: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        started = time.monotonic()
        window, high = started + (self.trace_every or 0), 0
        while not self._stop.wait(0.005):
            rss = rss_kb(self.pid)
            self.peak, high, self.samples = max(self.peak, rss), max(high, rss), self.samples + 1
            if self.trace_every and (now := time.monotonic()) >= window:
                self.trace.append((round(now - started, 2), round(high / 1024, 1)))
                window, high = window + self.trace_every, 0

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

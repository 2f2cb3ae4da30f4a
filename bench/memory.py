"""Reading a process's memory: its RSS now, and its peak while a block of code runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class PeakRss:
    """The highest of `read()` (an RSS in KB) while the `with` block runs, sampled every
    `every` seconds on a thread of its own, from `start` (by default one reading now)."""

    def __init__(
        self, read: Callable[[], int], every: float = 0.005, start: int | None = None
    ) -> None:
        self.read = read
        self.every = every
        self.peak = read() if start is None else start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.read())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


# glibc's arenas for threads other than the main one are mapped at multiples of HEAP_MAX_SIZE
# (64 MiB on 64-bit): what the store client's Tokio threads allocate lives there.
_ARENA_ALIGN = 64 * 2**20


def thread_arenas_kb(pid: int) -> int:
    """The resident KB of glibc's thread arenas in the process: its anonymous mappings that
    start at a 64 MiB boundary (another mapping could, rarely, start at one too)."""
    total, counting = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if not head[0].endswith(":"):  # a mapping: "start-end perms offset dev inode [path]"
            start = int(head[0].split("-")[0], 16)
            counting = len(head) == 5 and start % _ARENA_ALIGN == 0
        elif counting and head[0] == "Rss:":
            total += int(head[1])
    return total

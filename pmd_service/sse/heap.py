"""The cyclic garbage collector's pauses kept short with thousands of streams open (why and how:
docs/architecture.md, "Garbage collection")."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

# New streams between two freezes: their objects are what a collection of the unfrozen
# generations walks, so this bounds a pause (the GC line of `python -m bench.sse`).
FREEZE_EVERY = 500
# Reclaim no earlier than this many ended streams, however few are open.
RECLAIM_AT_LEAST = 1000
# ... and once no stream has opened for this long, unless OVERDUE times that many have ended.
QUIET_S = 2.0
OVERDUE = 3


class HeapKeeper:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_opening = 0.0
        self.pauses = 0
        self.pause_seconds = 0.0  # total
        self.pause_max = 0.0  # the longest since start-up (wall clock)
        # The CPU time of the longest one's work: on a machine short of cores the wall time
        # also counts the waits for one, which freezing cannot shorten.
        self.pause_max_cpu = 0.0
        self.pause_max_generation = -1
        self.freezes = 0
        self.reclaims = 0
        self._started_at = 0.0
        self._started_cpu = 0.0
        self._opened_at_freeze = 0
        self._ended_at_reclaim = 0

    def start(self) -> None:
        # Start-up's own garbage (imports, the app's construction) goes first, then all that
        # is left (modules, routes, the pool) is frozen: it lives as long as the process.
        gc.collect()
        gc.freeze()
        gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        # Nothing is unfrozen: the process is ending, and the interpreter's last collection
        # would otherwise walk every stream's objects on the way out (SIGTERM must exit in 2 s).
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        took = time.perf_counter() - self._started_at
        self.pauses += 1
        self.pause_seconds += took
        if took > self.pause_max:
            self.pause_max = took
            self.pause_max_cpu = time.thread_time() - self._started_cpu
            self.pause_max_generation = info["generation"]

    def opened(self, opened: int) -> None:
        """Called as each stream opens, with the count of streams ever opened: checked at every
        opening, as a second's worth of openings after a deploy left unfrozen is too many."""
        self._last_opening = self._clock()
        if opened - self._opened_at_freeze >= FREEZE_EVERY:
            # The young generations first (cheap: they are small), so the openings'
            # short-lived cycles are collected rather than frozen.
            gc.collect(1)
            gc.freeze()
            self.freezes += 1
            self._opened_at_freeze = opened

    def tend(self, opened: int, ended: int, open_now: int) -> None:
        """About once a second: the hub's streams ever opened, ever ended, and open now."""
        due = max(open_now, RECLAIM_AT_LEAST)
        garbage = ended - self._ended_at_reclaim
        quiet = self._clock() - self._last_opening >= QUIET_S
        if garbage >= due and (quiet or garbage >= OVERDUE * due):
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.reclaims += 1
            self._ended_at_reclaim = ended
            self._opened_at_freeze = opened

"""Turns at the pool for stream openings: a FIFO semaphore whose every step is O(1), as a
reconnect storm queues thousands here and asyncio.Semaphore (3.11) is linear in its waiters
(docs/benchmarks.md, "What made the storm cheaper"). A released turn goes straight to the oldest
waiter still waiting; a waiter that gave up is skipped when its turn comes.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Turns:
    __slots__ = ("_free", "_waiters")

    def __init__(self, turns: int) -> None:
        self._free = turns
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed a turn as it was cancelled: pass it on
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    async def take(self) -> Turn:
        """A turn, for a holder that may give it back before its end (`Turn.leave`)."""
        await self.__aenter__()
        return Turn(self)

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            turn = waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


class Turn:
    """One turn taken from `Turns`, given back once whoever leaves it first."""

    __slots__ = ("_turns",)

    def __init__(self, turns: Turns) -> None:
        self._turns: Turns | None = turns

    def leave(self) -> None:
        turns, self._turns = self._turns, None
        if turns is not None:
            turns._release()

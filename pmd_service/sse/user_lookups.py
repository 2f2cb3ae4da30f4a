"""The user lookups of stream openings, many to a query: in a reconnect storm one query each
was the largest share of a server's CPU per opening (docs/benchmarks.md, "What made the storm
cheaper"), so lookups that arrive while a query is out wait for the next one, which takes them all.

The queries take the openings' turns at the pool (sse/pool_turns.py), so a storm still leaves the
rest of the pool to other requests. A query refused for a value in it is asked again in halves
until that value is alone: only its opening fails.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import asyncpg

from ..core.db import PoolTimeout
from ..host.access import SQL_USERS_BY_SQIDS, valid_sqid
from .pool_turns import Turns

# Public ids a query looks up at most (the rest wait for the next one).
MAX_BATCH = 500
# Queries out at once: each takes a turn; a second lets lookups flow while one is out.
IN_FLIGHT = 2


class UserLookups:
    def __init__(self, pool: asyncpg.Pool, turns: Turns, refuse_if_closing: Callable[[], None]):
        self._pool = pool
        self._turns = turns
        self._refuse_if_closing = refuse_if_closing
        self._waiting: dict[str, list[asyncio.Future[asyncpg.Record | None]]] = {}
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self.queries = 0  # for tests and benchmarks: lookups answered per query
        self.looked_up = 0

    async def by_sqid(self, sqid: str) -> asyncpg.Record | None:
        """The `users` row (host/access.py's columns) with this public id, or None."""
        if not valid_sqid(sqid):
            return None
        found: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(sqid, []).append(found)
        self._send()
        return await found

    def _send(self) -> None:
        while self._waiting and self._in_flight < IN_FLIGHT and not self._stopped:
            batch = dict(itertools.islice(self._waiting.items(), MAX_BATCH))
            for sqid in batch:
                del self._waiting[sqid]
            self._in_flight += 1
            task = asyncio.create_task(self._query(batch), name="sse-user-lookups")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _query(self, batch: dict[str, list[asyncio.Future[asyncpg.Record | None]]]) -> None:
        try:
            async with self._turns:
                self._refuse_if_closing()
                rows, refused = await self._fetch(list(batch))
        except Exception as exc:  # the database's or the shutdown's: every opening answers it
            if isinstance(exc, TimeoutError) and not isinstance(exc, PoolTimeout):
                # The query outlasted the command timeout: what the box cannot serve in time is
                # shed as the pool's timeout is (503, Retry-After), not answered 500.
                exc = PoolTimeout("the database did not answer the openings' user lookup in time")
            for waiters in batch.values():
                _fail(waiters, exc)
        else:
            by_sqid = {row["public_sqid"]: row for row in rows}
            for sqid, waiters in batch.items():
                if sqid in refused:
                    _fail(waiters, refused[sqid])
                    continue
                self.looked_up += len(waiters)
                for found in waiters:
                    if not found.done():  # its opening was cancelled meanwhile
                        found.set_result(by_sqid.get(sqid))
        finally:
            for waiters in batch.values():  # only when this query itself was cancelled
                for found in waiters:
                    found.cancel()
            self._in_flight -= 1
            self._send()

    async def _fetch(self, sqids: list[str]) -> tuple[list[asyncpg.Record], dict[str, Exception]]:
        """The rows of `sqids`, and the ids refused for their value (each asked alone)."""
        try:
            rows = await self._pool.fetch(SQL_USERS_BY_SQIDS, sqids)
        except asyncpg.DataError as exc:
            if len(sqids) == 1:
                return [], {sqids[0]: exc}
            half = len(sqids) // 2
            rows, refused = await self._fetch(sqids[:half])
            more, refused_too = await self._fetch(sqids[half:])
            return rows + more, refused | refused_too
        self.queries += 1
        return rows, {}

    async def stop(self) -> None:
        """At shutdown: no query is sent any more, and what waits for one is cancelled."""
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for waiters in self._waiting.values():
            for found in waiters:
                found.cancel()
        self._waiting.clear()


def _fail(waiters: list[asyncio.Future[asyncpg.Record | None]], exc: Exception) -> None:
    for found in waiters:
        if not found.done():
            # Shared: a future re-raises it with the traceback it was set with, so the
            # openings' tracebacks do not pile onto one another.
            found.set_exception(exc)

"""Rows of one query, read through a server-side cursor on the event loop, for the build thread.

The ZIP is built in a worker thread (see zipbuild.py) while asyncpg lives on the event loop, so
the thread pulls batches across: each batch is fetched by a coroutine handed to the loop
(`run_coroutine_threadsafe`), and the next one is requested before the thread encodes the
current one. That keeps at most two batches in memory, lets the database work while the thread
encodes and deflates, and needs no queue that the loop would have to block on: the thread only
ever waits for a future, the loop never waits for the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Generator
from typing import Any

import asyncpg

from .zipbuild import BuildCancelled

log = logging.getLogger(__name__)

# ~2 KB comments: one batch is ~1 MB of text, and 200,000 comments are 400 round trips.
BATCH_ROWS = 500


class RowFeed:
    """Iterate it on the build thread; `aclose()` it on the loop once that thread has ended."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        loop: asyncio.AbstractEventLoop,
        cancel: threading.Event,
        sql: str,
        *args: Any,
        batch: int = BATCH_ROWS,
    ) -> None:
        self._pool, self._loop, self._cancel = pool, loop, cancel
        self._sql, self._args, self._batch = sql, args, batch
        self._held = contextlib.AsyncExitStack()  # the connection and its transaction
        self._cursor: asyncpg.cursor.Cursor[asyncpg.Record] | None = None
        self._exhausted = False
        self._step: concurrent.futures.Future[list[asyncpg.Record]] | None = None

    async def _fetch(self) -> list[asyncpg.Record]:
        if self._exhausted:
            return []
        if self._cursor is None:
            conn = await self._held.enter_async_context(self._pool.acquire())
            # A cursor lives only inside a transaction; read-only, it locks nothing.
            await self._held.enter_async_context(conn.transaction(readonly=True))
            self._cursor = await conn.cursor(self._sql, *self._args)
        rows = await self._cursor.fetch(self._batch)
        if len(rows) < self._batch:
            # The last rows are in: give the connection back now, not after the whole ZIP.
            self._exhausted = True
            await self._held.aclose()
        return rows

    def _request(self) -> concurrent.futures.Future[list[asyncpg.Record]]:
        self._step = asyncio.run_coroutine_threadsafe(self._fetch(), self._loop)
        return self._step

    def __iter__(self) -> Generator[list[asyncpg.Record], None, None]:
        """Non-empty batches, in the query's order. Runs on the build thread only."""
        step = self._request()
        while rows := step.result():
            if self._cancel.is_set():
                raise BuildCancelled
            step = self._request()  # the database fetches the next batch meanwhile
            yield rows

    async def aclose(self) -> None:
        """Release the connection, even when the build stopped halfway through the rows."""
        step = self._step
        if step is not None and not step.done():
            # A prefetch may still be running: closing under it would race it for the cursor.
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(step)
        self._exhausted = True
        try:
            await self._held.aclose()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # The build's own outcome (ready, or the error that stopped it) is what matters.
            log.warning("closing a comments/reactions cursor failed: %r", exc)

"""Rows of one query, read through a server-side cursor on the event loop, for the build thread
(why this shape: docs/architecture.md, "Streamed JSON files")."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import zlib
from collections.abc import Generator
from typing import Any

import asyncpg

from ..core.db import SET_NO_IDLE_BOUND
from .build import BuildCancelled

log = logging.getLogger(__name__)

# Rows a round trip: a batch of comments is about a MiB of text.
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
        self._cursor = f"pmd_feed_{zlib.crc32(sql.encode()):08x}"
        self._held = contextlib.AsyncExitStack()  # the connection and its transaction
        self._conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record] | None = None
        self._exhausted = False
        self._step: concurrent.futures.Future[list[asyncpg.Record]] | None = None

    async def _fetch(self) -> list[asyncpg.Record]:
        if self._exhausted:
            return []
        if self._conn is None:
            conn = await self._held.enter_async_context(self._pool.acquire())
            # A cursor lives only inside a transaction; read-only, it locks nothing.
            await self._held.enter_async_context(conn.transaction(readonly=True))
            await conn.execute(SET_NO_IDLE_BOUND)  # the build thread may take its time
            await conn.execute(
                f"DECLARE {self._cursor} NO SCROLL CURSOR FOR {self._sql}", *self._args
            )
            self._conn = conn
        rows = await self._conn.fetch(f"FETCH {self._batch:d} FROM {self._cursor}")
        if len(rows) < self._batch:
            # Give the connection back now, not after the whole ZIP.
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

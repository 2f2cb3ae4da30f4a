"""A new request's first event, held back a moment after the reply to its POST.

The host's page adds a card when it has parsed the reply and replaces cards by id on
`bdr_update`; a browser whose main thread is busy may handle an event before a reply that
arrived first, and then shows two cards, so the first event comes later than that
(`SSE_FIRST_EVENT_HOLD_MS`). Only the first event waits: the request is enqueued at once and
stays unannounced meanwhile, and its announcement makes one event showing the request as it is
by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import asyncpg
from arq.connections import ArqRedis

from .job_sql import enqueue_bdr
from .service import SQL_ANNOUNCE, announce

log = logging.getLogger(__name__)

# A shutdown flushes the held announcements at once; each is one UPDATE and one enqueue.
FLUSH_SECONDS = 5.0


class Announcer:
    def __init__(self, pool: asyncpg.Pool, redis: ArqRedis, hold_seconds: float) -> None:
        self._pool = pool
        self._redis = redis
        self.hold_seconds = hold_seconds
        self._now = asyncio.Event()  # set at shutdown: no more waiting
        self._held: set[asyncio.Task[None]] = set()

    async def after_reply(self, bdr_id: uuid.UUID) -> None:
        """Called once the reply to the request's POST is written."""
        if self.hold_seconds <= 0 or self._now.is_set():
            await announce(self._pool, self._redis, bdr_id)
            return
        try:
            await enqueue_bdr(self._redis, bdr_id)
        except Exception as exc:  # Redis down: the row is safe; the every-minute sweep enqueues it
            log.warning("enqueue of BDR %s failed (%s); the sweep will pick it up", bdr_id, exc)
        # A task of its own: the handler returns at once, so the next request on the same
        # keep-alive connection is not held up with it.
        task = asyncio.create_task(self._announce_later(bdr_id), name=f"announce-{bdr_id}")
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    async def _announce_later(self, bdr_id: uuid.UUID) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.hold_seconds):
                await self._now.wait()
        try:
            await self._pool.execute(SQL_ANNOUNCE, bdr_id)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("announcing BDR %s failed (%s); the sweep will", bdr_id, exc)

    async def flush(self) -> None:
        """Announce everything held, now (before the pool and Redis close); what does not
        make it in time is left to the sweep, as after a crash."""
        self._now.set()
        if not self._held:
            return
        _, late = await asyncio.wait(set(self._held), timeout=FLUSH_SECONDS)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d new requests left unannounced at shutdown; the sweep will", len(late))

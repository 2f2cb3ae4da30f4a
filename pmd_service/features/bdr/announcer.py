"""A new request's first event, held back a moment after the reply to its POST."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import asyncpg
from arq.connections import ArqRedis

from .service import enqueue_or_sweep, mark_announced

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
            if await mark_announced(self._pool, bdr_id):
                await enqueue_or_sweep(self._redis, bdr_id)
            return
        await enqueue_or_sweep(self._redis, bdr_id)
        # A task of its own, so the next request on the same connection is not held up with it.
        task = asyncio.create_task(self._announce_later(bdr_id), name=f"announce-{bdr_id}")
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    async def _announce_later(self, bdr_id: uuid.UUID) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.hold_seconds):
                await self._now.wait()
        await mark_announced(self._pool, bdr_id)

    async def flush(self) -> None:
        """Announce all held now, before the pool and Redis close; the sweep does the rest."""
        self._now.set()
        if not self._held:
            return
        _, late = await asyncio.wait(set(self._held), timeout=FLUSH_SECONDS)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d new requests left unannounced at shutdown; the sweep will", len(late))

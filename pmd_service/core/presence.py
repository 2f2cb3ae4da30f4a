"""Whether people use the service now: the servers mark their people's requests in Redis, and
background work asks before it takes its share of the machine."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# One key for the site: Redis's own clock expires it, so no two machines' clocks are compared.
KEY = "pmd:people-on"
# People are on while one of their requests began or ended this recently.
WINDOW_SECONDS = 1.0
# A server writes the key at most this often, so a busy server pays a write a few times a second.
REFRESH_SECONDS = WINDOW_SECONDS / 4


class Presence:
    """A server's marks: at most one write in flight, never waited on by the request."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._marked = -REFRESH_SECONDS
        self._writing: asyncio.Task[None] | None = None

    def mark(self) -> None:
        now = time.monotonic()
        if now - self._marked < REFRESH_SECONDS or (self._writing and not self._writing.done()):
            return
        self._marked = now
        self._writing = asyncio.create_task(self._write())

    async def _write(self) -> None:
        try:
            await self._redis.set(KEY, b"1", px=round(WINDOW_SECONDS * 1000))
        except (RedisError, OSError) as exc:
            # Unmarked, background work runs at its full pace for a moment: never a person's error.
            log.debug("people's presence not marked: %r", exc)

    async def close(self) -> None:
        if self._writing is not None:
            await self._writing


async def people_on(redis: Redis) -> bool:
    """Whether a person's request began or ended within the window, on any server."""
    try:
        return bool(await redis.exists(KEY))
    except (RedisError, OSError) as exc:
        # Not known: background work yields, as it would to a person.
        log.warning("people's presence not read, taken as on: %r", exc)
        return True

"""The host site's cached feeds: dropped after an action changes what they show.

The host caches feeds in its own Redis and its PMD deletes `feed:recent:*`, `feed:promoted:*`
and `hashtags:*` after a hide or delete; without the same, hidden and deleted posts would stay
in cached feeds until the cache expires. SCAN + UNLINK, never KEYS (which blocks a big Redis),
and never a reason for the action to fail: the action has committed by then.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

# Keys per UNLINK, and per SCAN step (a hint to Redis, not a limit).
_BATCH = 500
# The whole invalidation, so a slow cache never holds a request's reply for long.
TIMEOUT_SECONDS = 3.0


def create_host_cache(url: str) -> aioredis.Redis:
    cache: aioredis.Redis = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    return cache


async def _drop(cache: aioredis.Redis, patterns: tuple[str, ...]) -> int:
    removed = 0
    for pattern in patterns:
        keys: list[bytes] = []
        async for key in cache.scan_iter(match=pattern, count=_BATCH):
            keys.append(key)
            if len(keys) >= _BATCH:
                removed += await cache.unlink(*keys)
                keys.clear()
        if keys:
            removed += await cache.unlink(*keys)
    return removed


async def drop_cached_feeds(cache: aioredis.Redis, patterns: tuple[str, ...]) -> int | None:
    """Keys removed, or None when the cache could not be reached (logged, never raised)."""
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            return await _drop(cache, patterns)
    except (aioredis.RedisError, OSError, TimeoutError) as exc:
        log.warning("could not drop the host's cached feeds (%s): they expire on their own", exc)
        return None

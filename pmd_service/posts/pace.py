"""How many bulk actions (undos included) one person may send a minute: a fixed window counted
in the queue's Redis, so every server process counts the same requests."""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..core.problems import ProblemError

log = logging.getLogger(__name__)

_WINDOW_SECONDS = 60


async def take_turn(redis: Redis, user_id: int, per_minute: int) -> None:
    """Count one action of `user_id`, or 429 with Retry-After past `per_minute` this minute;
    an unreachable Redis lets the action through (the database bounds what it keeps)."""
    now = time.time()
    window = int(now // _WINDOW_SECONDS)
    key = f"pmd:pace:actions:{user_id}:{window}"
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2 * _WINDOW_SECONDS)
            count, _ = await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("could not count a bulk action against the pace limit (%s): let through", exc)
        return
    if count > per_minute:
        wait = max(1, int((window + 1) * _WINDOW_SECONDS - now + 0.999))
        raise ProblemError(
            429,
            "too-many-actions",
            "Too Many Requests",
            f"At most {per_minute} bulk actions a minute; wait {wait} s and send it again "
            "(to change many posts at once, act by filter).",
            headers={"Retry-After": str(wait)},
            extra={"retry_after_seconds": wait},
        )

"""A database or Redis that refuses: 503 with Retry-After, and one log line a minute."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass, field

import redis.exceptions
from aiohttp import web

from ..core.db import database_refusal

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

_REDIS_REFUSALS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def refused_by(exc: BaseException) -> str | None:
    """Which shared service `exc` says is unavailable, or None if it is no such refusal."""
    if database_refusal(exc):
        return "database"
    if isinstance(exc, _REDIS_REFUSALS):
        return "redis"
    return None


@dataclass
class _Window:
    count: int = 0
    last: str = ""
    opened: float = field(default_factory=time.monotonic)


class OutageLog:
    """Per service: a line for the first refusal, then one per `window` with the count."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._open: dict[str, _Window] = {}

    def record(self, service: str, exc: BaseException, where: str) -> None:
        reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        current = self._open.get(service)
        if current is not None:
            current.count += 1
            current.last = reason
            return
        log.warning(
            "%s unavailable (%s) at %s; answering 503 with Retry-After, further refusals "
            "are summed up every %.0f s",
            service,
            reason,
            where,
            self.window,
        )
        self._open[service] = _Window()
        self._schedule(service)

    def _schedule(self, service: str) -> None:
        # A context of its own: the summary is no request's, so it carries no request id.
        asyncio.get_running_loop().call_later(
            self.window, self._flush, service, context=contextvars.Context()
        )

    def _flush(self, service: str) -> None:
        current = self._open.pop(service, None)
        if current is None or not current.count:
            return  # quiet for a whole window: the next refusal opens a new one
        log.warning(
            "%s unavailable: %d more requests answered 503 in the last %.0f s (last: %s)",
            service,
            current.count,
            time.monotonic() - current.opened,
            current.last,
        )
        self._open[service] = _Window()
        self._schedule(service)


# Refusals of the database and Redis, logged once a minute with a count.
OUTAGES: web.AppKey[OutageLog] = web.AppKey("outages")

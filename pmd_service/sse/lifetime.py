"""The SSE hub's lifetime in the app: started with it (its LISTEN connection, the openings'
turns at the pool and their batched lookups), every open stream ended at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from aiohttp import web

from ..api.keys import DB_POOL, SETTINGS
from ..api.ticket_endpoint import TICKET_CALLERS
from . import revocation
from .endpoints import (
    OPENINGS_AT_ONCE,
    SSE_CALLERS,
    SSE_HUB,
    SSE_KINDS,
    SSE_OPENING_GATE,
    SSE_POOL_TURNS,
    TEND_HEAP,
)
from .heap import HeapKeeper
from .hub import Hub
from .kinds import EventKinds
from .pool_turns import Turns
from .user_lookups import UserLookups


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = app[DB_POOL]
    hub = Hub(
        # LISTEN needs a session of its own: never through a transaction-mode pooler.
        settings.direct_url,
        app[SSE_KINDS],
        search_path=settings.search_path,
        max_per_user=settings.sse_max_per_user,
        queue_size=settings.sse_queue_size,
        ping_seconds=settings.sse_ping_seconds,
        liveness_seconds=settings.sse_liveness_seconds,
        access_check=partial(revocation.revocations, pool),
        access_check_seconds=settings.sse_access_check_seconds,
        heap=HeapKeeper() if app[TEND_HEAP] else None,
    )
    await hub.start()
    app[SSE_HUB] = hub
    # A reconnect storm's openings, queued for the pool, would time out as 503s and take every
    # connection from the other requests (docs/benchmarks.md, "One box, every core"): they take
    # turns at half the pool instead, and the kernel's accept queue holds the rest.
    app[SSE_POOL_TURNS] = turns = Turns(max(1, settings.db_pool_max // 2))
    app[SSE_CALLERS] = callers = UserLookups(pool, turns, hub.refuse_if_closing)
    app[TICKET_CALLERS] = callers.by_sqid
    yield
    await callers.stop()
    await hub.stop()


async def _close_streams(app: web.Application) -> None:
    # on_shutdown runs before aiohttp waits for open handlers: ending every stream here lets
    # them all finish at once instead of each waiting out the shutdown timeout.
    if SSE_HUB in app:
        app[SSE_HUB].close_all()


def setup(app: web.Application, kinds: EventKinds) -> None:
    """`kinds`: the events the stream serves."""
    app[SSE_KINDS] = kinds
    app[SSE_OPENING_GATE] = Turns(OPENINGS_AT_ONCE)
    app.on_shutdown.append(_close_streams)

"""The worker's shared resources, created in arq's on_startup and closed in on_shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from ..db import create_pool
from ..migrate import apply_migrations
from ..public_ids import PublicIds
from ..settings import Settings


@dataclass
class WorkerState:
    settings: Settings
    pool: asyncpg.Pool
    public_ids: PublicIds
    # Only when ARTWORK_BASE_URL is set: workers without the vault fetch over HTTP.
    http: aiohttp.ClientSession | None = None


STATE_KEY = "pmd"


def state(ctx: dict[str, Any]) -> WorkerState:
    value = ctx[STATE_KEY]
    assert isinstance(value, WorkerState)
    return value


async def startup(ctx: dict[str, Any], *, settings: Settings) -> None:
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, "pmd-worker", min_size=1, max_size=8)
    if settings.auto_migrate:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
    http = None
    if settings.artwork_base_url:
        connector = aiohttp.TCPConnector(limit=settings.artwork_fetch_concurrency * 2)
        http = aiohttp.ClientSession(connector=connector, raise_for_status=False)
    ctx[STATE_KEY] = WorkerState(settings, pool, PublicIds(settings.sqids_alphabet), http)


async def shutdown(ctx: dict[str, Any]) -> None:
    value = ctx.get(STATE_KEY)
    if isinstance(value, WorkerState):
        if value.http is not None:
            await value.http.close()
        await value.pool.close()

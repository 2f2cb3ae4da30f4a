"""How every process opens the database: a wrong DATABASE_URL (no host tables there) stops it
before it writes anything, a pooler's search path is checked, and AUTO_MIGRATE migrates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncpg

from .db import check_search_path, connect, session, settings_pool
from .migrate import migrate, require_host_tables
from .settings import Settings

if TYPE_CHECKING:
    from .db import Conn

# The servers' pool's name in pg_stat_activity.
SERVER_APPLICATION = "pmd-server"


async def open_pool(
    settings: Settings,
    application_name: str,
    *,
    min_size: int,
    max_size: int,
    migrations: bool = True,
    then: Callable[[Conn], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """The process's pool, closed again if a check fails; `then` runs on the migrator's session."""
    pool = await settings_pool(settings, application_name, min_size=min_size, max_size=max_size)
    try:
        async with pool.acquire() as conn:
            await require_host_tables(conn, settings)
        if settings.database_pooler != "none":
            await check_search_path(pool, settings)
        if (migrations and settings.auto_migrate) or then is not None:
            async with session(settings, pool, application_name) as conn:
                if migrations and settings.auto_migrate:
                    await migrate(conn, settings)
                if then is not None:
                    await then(conn)
    except BaseException:
        await pool.close()
        raise
    return pool


@asynccontextmanager
async def checked_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A command's direct connection to a database that has the host's tables."""
    conn = await connect(settings.direct_url, "pmd-cli", search_path=settings.search_path)
    try:
        await require_host_tables(conn, settings)
        yield conn
    finally:
        await conn.close()

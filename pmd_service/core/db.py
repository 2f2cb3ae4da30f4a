"""asyncpg pools and connections: every connection names itself for pg_stat_activity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import msgspec

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A plain connection or one borrowed from a pool: services accept either.
    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Both JSON types: the host's `users.roles` is `json`, the service's own columns `jsonb`.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: msgspec.json.encode(v).decode(),
            decoder=msgspec.json.decode,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release, in place of asyncpg's default reset query.

    asyncpg still rolls back a transaction left open and drops listeners before calling this;
    its default then sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`,
    one more round trip on every release, which `pool.fetch` awaits before it returns (~0.3 ms
    of a request that makes two queries). None of it has anything to undo here: the service
    sets nothing for a session (`set_config(..., true)` is transaction-local), holds its only
    session lock (the migrator's) in try/finally, opens cursors only inside transactions, and
    LISTENs on a connection of its own, never a pooled one.
    """


def _server_settings(application_name: str, search_path: str | None) -> dict[str, str]:
    found = {"application_name": application_name}
    if search_path is not None:
        # The service's own schema first, then the host's: every query names tables unqualified.
        found["search_path"] = search_path
    return found


async def create_pool(
    dsn: str,
    application_name: str,
    *,
    search_path: str | None = None,
    min_size: int = 1,
    max_size: int = 10,
) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=30,
        server_settings=_server_settings(application_name, search_path),
    )
    return pool


async def connect(
    dsn: str, application_name: str, *, search_path: str | None = None, **kwargs: Any
) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, server_settings=_server_settings(application_name, search_path), **kwargs
    )
    await _init_connection(conn)
    return conn

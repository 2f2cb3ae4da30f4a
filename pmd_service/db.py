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

"""The demo user of dev mode: its handle and its lookup, shared by the demo loader, the dev
runner (which prints its link and token) and the page's dev route `/`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from ..core.db import Conn

DEMO_HANDLE = "demo"
SQL_DEMO_SQID = "SELECT public_sqid FROM users WHERE handle = $1"


async def demo_user_sqid(conn: Conn | asyncpg.Pool) -> str | None:
    """The demo user's public id, or None before the demo data is loaded."""
    sqid: str | None = await conn.fetchval(SQL_DEMO_SQID, DEMO_HANDLE)
    return sqid

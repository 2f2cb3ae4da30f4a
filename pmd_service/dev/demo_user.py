"""The demo user of dev mode: its handle and its lookup, and how its emails' language shows."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import asyncpg
from babel import Locale, UnknownLocaleError

if TYPE_CHECKING:
    from ..core.db import Conn

DEMO_HANDLE = "demo"
# The demo's mark: a version-5 `user_key`, where the host gives every account a random one.
DEMO_USERS = uuid.UUID("20d664d0-441d-4e55-a820-62c0c92052d6")
SQL_DEMO_SQID = "SELECT public_sqid FROM users WHERE handle = $1 AND user_key = $2"


def demo_user_key(handle: str) -> uuid.UUID:
    """The `user_key` the demo loader gives its user `handle`."""
    return uuid.uuid5(DEMO_USERS, handle)


async def demo_user_sqid(conn: Conn | asyncpg.Pool, handle: str = DEMO_HANDLE) -> str | None:
    """The public id of the demo's user `handle`, or None when the demo loader did not make one."""
    sqid: str | None = await conn.fetchval(SQL_DEMO_SQID, handle, demo_user_key(handle))
    return sqid


def language_shown(tag: str) -> str:
    """`pt-BR` → "Portuguese (Brazil), pt-BR": a language by name, or the tag CLDR lacks."""
    if not tag:
        return "not stated"
    try:
        name = Locale.parse(tag, sep="-").get_display_name("en")
    except (UnknownLocaleError, ValueError):
        return tag
    return f"{name}, {tag}" if name else tag

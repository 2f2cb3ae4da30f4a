"""What check-host's tests share: the host's newest tables, the service's migrated beside."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from pmd_service.core.db import connect
from pmd_service.core.migrate import apply_migrations


@pytest.fixture
async def host(host_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The host's tables (an admin: alembic_version readable) with the service's migrations
    applied beside them, as deployed."""
    conn = await connect(host_url, "pmd-test", search_path='"pmd", "public"')
    await apply_migrations(conn)
    yield conn
    await conn.close()

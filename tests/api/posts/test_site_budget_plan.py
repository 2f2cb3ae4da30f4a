"""The site's budget reads only its window's spends: every owner's write sums the site's last
minute and purges what left the hour, so a scan of the whole hour would slow each write as the
site's hour fills (100,000 policies due at once)."""

from __future__ import annotations

import asyncpg
import pytest

from pmd_service.features.posts.pace import SQL_SITE_PURGE, SQL_SITE_SPENDS, SQL_SITE_USED


@pytest.mark.parametrize("sql", [SQL_SITE_USED, SQL_SITE_PURGE, SQL_SITE_SPENDS])
async def test_the_sites_statements_bound_their_scan_by_the_window(
    pool: asyncpg.Pool, sql: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", 60.0))
    assert "write_spends_site_idx" in plan and "Index Cond: (spent_at " in plan, plan

"""The site's budget reads only its window's spends: every owner's write sums the site's last
minute (a row a second) and purges what left the hour, so a scan of the whole hour would slow
each write as the site's hour fills (100,000 policies due at once)."""

from __future__ import annotations

import asyncpg
import pytest

from pmd_service.features.posts.pace import SQL_BUDGET_USED, SQL_SITE_SPEND, SQL_SITE_SPENDS

# Each statement with a write's parameters: an owner's policy run, a minute and an hour.
WRITE: dict[str, object] = {
    "users": [1],
    "as_moderator": False,
    "posts": [3],
    "background": True,
    "site": True,
}
WINDOWS = {"short": 60.0, "long": 3600.0, "window": 60.0}
STATEMENTS = {
    "the read": SQL_BUDGET_USED,
    "the spend": SQL_SITE_SPEND,
    "a refusal's wait": SQL_SITE_SPENDS,
}


@pytest.mark.parametrize("name", STATEMENTS)
async def test_the_sites_statements_bound_their_scan_by_the_window(
    pool: asyncpg.Pool, name: str
) -> None:
    sql, *args = STATEMENTS[name].bind(WRITE | WINDOWS)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
    assert "site_spends_second_idx" in plan and "Index Cond: (second " in plan, plan
    assert "Seq Scan" not in plan, plan
    if name == "the spend":
        assert "write_spends_site_idx" in plan and "Index Cond: (spent_at " in plan, plan

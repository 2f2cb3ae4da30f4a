"""The write budget's edges, against real PostgreSQL: the site's budget checked again under its
lock passes a write that exactly fills the minute and refuses one post more, a budget with
nothing spent in its window lets any one action by, and a policy's run that the site leaves
no less room than its owner's budget is deferred to its next period, not held for the minute."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.locks import SQL_XACT_LOCK, AdvisoryLock
from pmd_service.core.settings import Settings
from pmd_service.features.posts.policies.runs import run_due_policies
from pmd_service.jobs.context import job_context
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow, posts_state
from tests.api.posts.test_cleanup_policies import create, gallery, hidden, policy
from tests.api.posts.test_posts_concurrency import batches_waiting
from tests.helpers import acted, age_spends, assert_problem, ok, site_spent

Client = TestClient[Any, Any]

# The site's minute in the recheck's tests: far more than one batch (128), so its floor is out.
SITE = 1000
FILTERED = 300
RECHECKED = {
    "bulk_max_posts": FILTERED,
    "bulk_changed_posts_site_per_minute": SITE,
    "bulk_changed_posts_site_background_per_minute": SITE,
}


async def _client(aiohttp_client: AiohttpClient, settings: Settings, **changes: Any) -> Client:
    return await aiohttp_client(create_app(msgspec.structs.replace(settings, **changes)))


async def _rechecked(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory
) -> tuple[Client, UserRow, list[int], UserRow]:
    """A client under RECHECKED's budgets, an owner of FILTERED posts (ids), and another owner."""
    client = await _client(aiohttp_client, settings, **RECHECKED)
    owner, ids = await factory.owner_and_bulk(FILTERED)
    return client, owner, ids, await factory.user()


async def _hide_all_while_others_spend(
    client: Client, pool: asyncpg.Pool, owner: UserRow, others: UserRow, spent: int
) -> Any:
    """The owner hides all FILTERED of their posts by filter while `others` spend `spent` of
    the site's minute, committed after the write read the site's budget and before it spends."""
    body = {"action": "hide", "filter": {}, "expect_count": FILTERED}
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(SQL_XACT_LOCK, AdvisoryLock.WRITE_BUDGET_SITE, 0)
        await site_spent(holder, others.id, spent)
        writing = asyncio.ensure_future(
            client.post("/api/pmd/action", json=body, headers=owner.auth)
        )
        await batches_waiting(pool, 1)
    return await asyncio.wait_for(writing, timeout=30)


async def test_a_filter_write_that_exactly_fills_the_sites_minute_passes_its_recheck(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, pool: asyncpg.Pool
) -> None:
    client, owner, ids, others = await _rechecked(aiohttp_client, settings, factory)
    resp = await _hide_all_while_others_spend(client, pool, owner, others, SITE - FILTERED)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["changed_count"] == FILTERED
    assert await pool.fetchval("SELECT sum(posts) FROM write_spends") == SITE
    flags = await factory.post_flags(ids)
    assert all(flags[i]["hidden_by_user"] for i in ids)


async def test_a_filter_write_one_post_past_the_sites_minute_is_refused_at_its_recheck(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, pool: asyncpg.Pool
) -> None:
    client, owner, _, others = await _rechecked(aiohttp_client, settings, factory)
    before = await posts_state(pool)
    resp = await _hide_all_while_others_spend(client, pool, owner, others, SITE - FILTERED + 1)
    problem = await assert_problem(resp, 429, "site_budget_exceeded")
    details = problem["details"]
    assert (details["scope"], details["limit"]) == ("site", SITE)
    assert (details["used"], details["requested"]) == (SITE - FILTERED + 1, FILTERED)
    # Refused whole: the write's changes rolled back, nothing spent of the owner's.
    assert await posts_state(pool) == before
    assert await pool.fetchval("SELECT sum(posts) FROM write_spends") == SITE - FILTERED + 1


async def test_with_nothing_spent_in_its_windows_an_undo_larger_than_the_budget_passes(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner, ids = await factory.owner_and_bulk(8)
    done = await acted(await _client(aiohttp_client, settings), owner, "hide", ids)
    # The budgets shrink to 5 posts a minute once the 8-post hide has left both windows.
    await age_spends(pool, 7200)
    shrunk = {"bulk_changed_posts_per_minute": 5, "bulk_changed_posts_per_hour": 50}
    client = await _client(aiohttp_client, settings, bulk_max_posts=5, **shrunk)
    resp = await client.post(done["undo"], headers=owner.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["affected_count"] == 8
    flags = await factory.post_flags(ids)
    assert not any(flags[i]["hidden_by_user"] for i in ids)
    # Once something is spent, the budget holds again: the undo's 8 leave no room this minute.
    problem = await assert_problem(
        await client.post(
            "/api/pmd/action",
            json={"action": "hide", "post_ids": ids[:1]},
            headers=owner.auth,
        ),
        429,
        "row_budget_exceeded",
    )
    assert (problem["details"]["used"], problem["details"]["limit"]) == (8, 5)


async def test_a_run_the_site_leaves_as_much_room_as_its_owner_is_deferred_a_period(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory
) -> None:
    # The site's minute (all of it the policies' share) and the owner's are both 4 posts.
    small = msgspec.structs.replace(
        settings,
        bulk_max_posts=4,
        bulk_changed_posts_per_minute=4,
        bulk_changed_posts_per_hour=40,
        bulk_changed_posts_site_per_minute=4,
        bulk_changed_posts_site_background_per_minute=4,
    )
    client = await aiohttp_client(create_app(small))
    owner, posts = await gallery(factory)
    made = await create(client, owner, policy())
    # The owner hides two new posts: 2 posts left of their minute, and 2 of the site's.
    fresh = [(await factory.post(owner)).id for _ in range(2)]
    assert (await ok(client, owner, "hide", fresh))["changed_count"] == 2
    async with job_context(small) as ctx:
        assert await run_due_policies(ctx) == 1
    assert await hidden(factory.pool, posts) == {"old1", "old2", "hidden"}
    row = await factory.pool.fetchrow(
        "SELECT last_run, next_run_at FROM cleanup_policies WHERE id = $1", uuid.UUID(made["id"])
    )
    assert row is not None
    last = row["last_run"]
    assert (last["status"], last["changed_count"], last["left_count"]) == ("deferred", 2, 1)
    # Not held by the site: due again a week on, not at the next minute's tick.
    assert row["next_run_at"] > datetime.now(UTC) + timedelta(days=6)

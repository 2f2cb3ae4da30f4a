"""How fast one person may write, against real PostgreSQL and Redis: bulk actions a minute over
a sliding window (undos included), and posts changed a minute and an hour per owner and per
acting moderator, each write charged to the one who acts, refused whole before anything
changes, a write that changes nothing costing nothing, and no two concurrent writes passing on
the same room; and every owner's own writes together held to the site's budget a minute, but
for a person's batch, which never waits on what others spent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.locks import SQL_XACT_LOCK, AdvisoryLock
from pmd_service.core.settings import ConfigError, Settings
from pmd_service.features.posts import pace
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow, posts_state
from tests.api.posts.test_posts_concurrency import batches_waiting
from tests.helpers import act, age_spends, assert_problem, ok

Client = TestClient[Any, Any]
Made = Callable[..., Awaitable[Client]]


@pytest.fixture
def made(aiohttp_client: AiohttpClient, settings: Settings, redis_clean: None) -> Made:
    """A client of a new app with `changes` to the test's settings, made when the test asks."""
    return lambda **changes: aiohttp_client(
        create_app(msgspec.structs.replace(settings, **changes))
    )


def _budgeted(made: Made, per_minute: int, per_hour: int, **site: int) -> Awaitable[Client]:
    """A client whose actions may each change up to the minute's budget of posts."""
    return made(
        bulk_max_posts=per_minute,
        bulk_changed_posts_per_minute=per_minute,
        bulk_changed_posts_per_hour=per_hour,
        **site,
    )


@pytest.fixture
async def moderator(factory: Factory) -> UserRow:
    """A moderator, the first user the test makes, as each test here made it first."""
    return await factory.user(roles=["user", "moderator"])


async def _budget_refusal(
    resp: Any, requested: int, reason: str = "row_budget_exceeded"
) -> dict[str, Any]:
    problem = await assert_problem(resp, 429, reason)
    details = problem["details"]
    assert details["requested"] == requested
    assert details["retry_after_seconds"] == int(resp.headers["Retry-After"]) >= 1
    assert details["retry_after_seconds"] <= details["window_seconds"]
    return dict(details)


async def test_changed_posts_are_budgeted_a_minute_and_a_noop_costs_nothing(
    made: Made, factory: Factory, pool: asyncpg.Pool
) -> None:
    client = await _budgeted(made, 5, 50)
    user, ids = await factory.owner_and_bulk(8)
    assert (await ok(client, user, "hide", ids[:4]))["changed_count"] == 4
    before = await posts_state(pool)
    details = await _budget_refusal(await act(client, user, "hide", ids[4:]), 4)
    assert details | {"retry_after_seconds": 0} == {
        "limit": 5,
        "window_seconds": 60,
        "used": 4,
        "requested": 4,
        "retry_after_seconds": 0,
        "scope": "owner",
        "reason": "row_budget_exceeded",
    }
    # Refused whole: nothing changed, no history, nothing spent.
    assert await posts_state(pool) == before
    assert await pool.fetchval("SELECT count(*) FROM bulk_actions") == 1
    # The posts hidden already change nothing, so they cost nothing, whatever their number.
    for _ in range(3):
        assert (await ok(client, user, "hide", ids[:4]))["changed_count"] == 0
    assert (await ok(client, user, "hide", ids[4:5]))["changed_count"] == 1
    await _budget_refusal(await act(client, user, "unhide", ids[:1]), 1)


async def test_a_moderators_budget_spans_the_owners_they_act_on(
    made: Made, moderator: UserRow, factory: Factory
) -> None:
    client = await _budgeted(made, 5, 50)
    (first, firsts), (second, seconds) = [await factory.owner_and_bulk(3) for _ in range(2)]
    await ok(client, moderator, "hide", firsts, target_sqid=first.sqid)
    resp = await act(client, moderator, "hide", seconds, target_sqid=second.sqid)
    details = await _budget_refusal(resp, 3)
    assert details["scope"] == "moderator" and details["used"] == 3
    # Neither owner's own budget counts the moderator's writes.
    assert (await ok(client, second, "hide", seconds))["changed_count"] == 3
    assert (await ok(client, first, "hide", firsts))["changed_count"] == 3


async def test_an_owner_at_their_budget_never_holds_moderation_off(
    made: Made, moderator: UserRow, factory: Factory, pool: asyncpg.Pool
) -> None:
    client = await _budgeted(made, 5, 10)
    owner, ids = await factory.owner_and_bulk(8)
    # The owner spends their hour's budget: a toggle of five posts, a minute apart.
    await ok(client, owner, "hide", ids[:5])
    await age_spends(pool, 61)
    await ok(client, owner, "unhide", ids[:5])
    details = await _budget_refusal(await act(client, owner, "hide", ids[:1]), 1)
    assert (details["scope"], details["window_seconds"], details["used"]) == ("owner", 3600, 10)
    # A moderator's hide of one of their posts passes, charged to the moderator alone.
    body = await ok(client, moderator, "hide", ids[:1], target_sqid=owner.sqid)
    assert body["changed_count"] == 1
    resp = await act(client, moderator, "hide", ids[1:6], target_sqid=owner.sqid)
    details = await _budget_refusal(resp, 5)
    assert (details["scope"], details["window_seconds"], details["used"]) == ("moderator", 60, 1)
    details = await _budget_refusal(await act(client, owner, "hide", ids[6:7]), 1)
    assert (details["scope"], details["used"]) == ("owner", 10)


async def test_an_undo_is_budgeted_and_spends_it(
    made: Made, factory: Factory, pool: asyncpg.Pool
) -> None:
    client = await _budgeted(made, 6, 60)
    user, ids = await factory.owner_and_bulk(8)
    first = await act(client, user, "hide", ids[:3])
    undo = (await first.json())["undo"]
    resp = await client.post(undo, headers=user.auth)
    assert resp.status == 200 and (await resp.json())["affected_count"] == 3
    # The undo's 3 posts were spent: 6 in the minute.
    await _budget_refusal(await act(client, user, "hide", ids[3:4]), 1)
    # An undo past the budget is refused whole, and stays undoable.
    await pool.execute("DELETE FROM write_spends")
    second = await (await act(client, user, "hide", ids[3:8])).json()
    before = await posts_state(pool)
    await _budget_refusal(await client.post(second["undo"], headers=user.auth), 5)
    assert await posts_state(pool) == before
    await pool.execute("DELETE FROM write_spends")
    resp = await client.post(second["undo"], headers=user.auth)
    assert resp.status == 200 and (await resp.json())["affected_count"] == 5


async def test_the_windows_slide_and_the_hour_counts_what_the_minute_forgot(
    made: Made, factory: Factory, pool: asyncpg.Pool
) -> None:
    client = await _budgeted(made, 4, 6)
    user, ids = await factory.owner_and_bulk(8)
    await ok(client, user, "hide", ids[:4])
    # 50 s ago is still within the last minute.
    await age_spends(pool, 50)
    details = await _budget_refusal(await act(client, user, "hide", ids[4:5]), 1)
    assert details["window_seconds"] == 60 and details["retry_after_seconds"] <= 10
    # 70 s ago is not; the hour still counts it.
    await age_spends(pool, 20)
    await ok(client, user, "hide", ids[4:6])
    details = await _budget_refusal(await act(client, user, "hide", ids[6:7]), 1)
    assert details["window_seconds"] == 3600 and details["used"] == 6
    assert details["retry_after_seconds"] > 3000


async def test_concurrent_writes_never_pass_on_the_same_room(
    made: Made, factory: Factory, pool: asyncpg.Pool
) -> None:
    client = await _budgeted(made, 10, 100)
    user, ids = await factory.owner_and_bulk(16)
    # The test holds every post's row lock until all eight writes are in flight together.
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM posts WHERE id = ANY($1::int[]) FOR UPDATE", ids)
        running = asyncio.gather(
            *(act(client, user, "hide", ids[i : i + 2]) for i in range(0, 16, 2))
        )
        await batches_waiting(pool, 8)
    answers = await asyncio.wait_for(running, timeout=30)
    assert sorted(r.status for r in answers) == [200] * 5 + [429] * 3
    assert await pool.fetchval("SELECT count(*) FROM posts WHERE hidden_by_user") == 10
    assert await pool.fetchval("SELECT sum(posts) FROM write_spends") == 10


def _site_budgeted(made: Made, site: int) -> Awaitable[Client]:
    """A client whose site budget a minute is `site`, each person's far more."""
    return made(
        bulk_max_posts=site,
        bulk_changed_posts_per_minute=10_000,
        bulk_changed_posts_per_hour=10_000,
        bulk_changed_posts_site_per_minute=site,
    )


async def _site_refusal(resp: Any, requested: int) -> dict[str, Any]:
    details = await _budget_refusal(resp, requested, "site_budget_exceeded")
    assert (details["scope"], details["window_seconds"]) == ("site", 60)
    return details


def act_all(client: Client, user: UserRow, count: int, **extra: Any) -> Awaitable[Any]:
    """Hide every post of the target by filter, approved at `count`: more than one batch."""
    body = {"action": "hide", "filter": {}, "expect_count": count, **extra}
    return client.post("/api/pmd/action", json=body, headers=user.auth)


async def test_every_owners_writes_together_are_held_to_the_sites_budget(
    made: Made, factory: Factory, pool: asyncpg.Pool
) -> None:
    client = await _site_budgeted(made, 300)
    first, _ = await factory.owner_and_bulk(200)
    second, seconds = await factory.owner_and_bulk(150)
    third, _ = await factory.owner_and_bulk(200)
    assert (await (await act_all(client, first, 200)).json())["changed_count"] == 200
    before = await posts_state(pool)
    details = await _site_refusal(await act_all(client, second, 150), 150)
    assert details | {"retry_after_seconds": 0} == {
        "limit": 300,
        "window_seconds": 60,
        "used": 200,
        "requested": 150,
        "retry_after_seconds": 0,
        "scope": "site",
        "reason": "site_budget_exceeded",
    }
    # Refused whole: nothing changed, nothing spent.
    assert await posts_state(pool) == before
    # A person's batch is never refused for what others spent: past the site's minute too.
    assert (await ok(client, second, "hide", seconds[:128]))["changed_count"] == 128
    # The site's minute slides: 50 s on, the wait is what is left of the oldest spend's minute.
    await age_spends(pool, 50)
    details = await _site_refusal(await act_all(client, third, 200), 200)
    assert details["used"] == 328 and details["retry_after_seconds"] <= 10
    await age_spends(pool, 11)
    assert (await (await act_all(client, third, 200)).json())["changed_count"] == 200


async def test_moderation_neither_counts_toward_nor_waits_on_the_sites_budget(
    made: Made, moderator: UserRow, factory: Factory
) -> None:
    client = await _site_budgeted(made, 300)
    first, _ = await factory.owner_and_bulk(200)
    second, seconds = await factory.owner_and_bulk(150)
    await act_all(client, first, 200)
    await _site_refusal(await act_all(client, second, 150), 150)
    # The site's minute is spent: a moderator's hide still passes, and spends none of it.
    body = await ok(client, moderator, "hide", seconds[:100], target_sqid=second.sqid)
    assert body["changed_count"] == 100
    details = await _site_refusal(await act_all(client, second, 150), 150)
    assert details["used"] == 200


async def test_concurrent_owners_never_pass_on_the_same_site_room(
    made: Made, factory: Factory, pool: asyncpg.Pool
) -> None:
    client = await _site_budgeted(made, 650)
    owners = [(await factory.owner_and_bulk(130))[0] for _ in range(8)]
    # The test holds the site's budget until all eight writes wait on it together, each with its
    # posts changed, none of them committed.
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(SQL_XACT_LOCK, AdvisoryLock.WRITE_BUDGET_SITE, 0)
        running = asyncio.gather(*(act_all(client, owner, 130) for owner in owners))
        await batches_waiting(pool, 8)
    answers = await asyncio.wait_for(running, timeout=30)
    assert sorted(r.status for r in answers) == [200] * 5 + [429] * 3
    for resp in answers:
        if resp.status == 429:
            await _site_refusal(resp, 130)
    # Refused whole: a refused write's changes were rolled back.
    assert await pool.fetchval("SELECT count(*) FROM posts WHERE hidden_by_user") == 650
    assert await pool.fetchval("SELECT count(*) FROM bulk_actions") == 5
    assert await pool.fetchval("SELECT sum(posts) FROM write_spends") == 650


def test_an_action_larger_than_the_sites_budget_stops_the_start(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="BULK_CHANGED_POSTS_SITE_PER_MINUTE"):
        msgspec.structs.replace(settings, bulk_max_posts=10, bulk_changed_posts_site_per_minute=9)


async def test_the_action_pace_slides(
    made: Made, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three actions a minute: three late in one minute leave no room early in the next (a
    fixed window let twice the limit through across its boundary)."""
    client = await made(bulk_actions_per_minute=3)
    user, ids = await factory.owner_and_bulk(1)
    minute = 1_800_000_000 // 60 * 60
    clock = [minute + 58.0]
    monkeypatch.setattr(pace, "_now", lambda: clock[0])
    for _ in range(3):
        await ok(client, user, "hide", ids)
    clock[0] = minute + 61.0
    resp = await act(client, user, "hide", ids)
    problem = await assert_problem(resp, 429)
    assert problem["details"]["reason"] == "rate_limited"
    assert resp.headers["Retry-After"] == "57"
    # Once the first of them is a minute old, a turn frees up.
    clock[0] = minute + 118.5
    await ok(client, user, "hide", ids)


async def test_an_undo_takes_a_turn_of_the_action_pace(made: Made, factory: Factory) -> None:
    client = await made(bulk_actions_per_minute=2)
    user, ids = await factory.owner_and_bulk(2)
    first = await (await act(client, user, "hide", ids[:1])).json()
    second = await (await act(client, user, "hide", ids[1:])).json()
    # Two actions this minute: the undo is the third.
    resp = await client.post(first["undo"], headers=user.auth)
    assert (await assert_problem(resp, 429))["details"]["reason"] == "rate_limited"
    assert second["undo"] and (await factory.post_flags(ids[:1]))[ids[0]]["hidden_by_user"]

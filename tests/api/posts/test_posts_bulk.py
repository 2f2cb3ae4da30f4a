"""Bulk actions on everything a filter matches, tags and remix permission in bulk, against real
PostgreSQL on posts shaped as the host's migrations make them: the approved count (409 when it
changed, also while the action waited on a row lock), BULK_MAX_POSTS, the moderator's audit
row, the host's tag rules and rule L5."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.db import SET_CUSTOM_PLAN
from pmd_service.core.locks import SQL_XACT_LOCK, SQL_XACT_LOCKS
from pmd_service.core.settings import Settings
from pmd_service.features.posts import batch_sql, batches, pace
from pmd_service.features.posts.actions import HIDE
from pmd_service.features.posts.filters import FilterKeys, check_filter
from pmd_service.features.posts.pace import Budget
from pmd_service.host.access import Principal, User
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow, posts_state
from tests.api.posts.test_posts_concurrency import batches_waiting
from tests.helpers import assert_problem, logging_pool

Client = TestClient[Any, Any]


async def _post(client: Client, user: UserRow, path: str, body: dict[str, Any]) -> Any:
    return await client.post(f"/api/pmd/{path}", json=body, headers=user.auth)


async def _total(client: Client, user: UserRow, query: str) -> int:
    resp = await client.get(f"/api/pmd/posts?{query}", headers=user.auth)
    assert resp.status == 200, await resp.text()
    total: int = (await resp.json())["total_count"]
    return total


async def _tagged(factory: Factory, user: UserRow, n: int, tags: list[str]) -> list[int]:
    ids = await factory.posts_bulk(user, n)
    await factory.pool.execute(
        "UPDATE posts SET hashtags = $2::varchar[] WHERE id = ANY($1::int[])", ids, tags
    )
    return ids


async def _flags(factory: Factory, column: str) -> dict[int, Any]:
    rows = await factory.pool.fetch(f"SELECT id, {column} AS v FROM posts ORDER BY id")
    return {r["id"]: r["v"] for r in rows}


# --- by filter ---------------------------------------------------------------------------


async def test_hide_everything_that_matches(client: Client, factory: Factory) -> None:
    user = await factory.user()
    wip = await _tagged(factory, user, 5, ["wip"])
    done = await _tagged(factory, user, 3, ["done"])
    other = await factory.user()
    theirs = await _tagged(factory, other, 2, ["wip"])
    assert await _total(client, user, "hashtag=wip") == 5

    body = {"action": "hide", "filter": {"hashtag": ["#WIP"]}, "expect_count": 5}
    resp = await _post(client, user, "action", body)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert (answer["affected_count"], answer["changed_count"]) == (5, 5)
    assert answer["message"] == "Hidden 5 post(s)"
    assert answer["undo"].startswith("/api/pmd/actions/")
    hidden = await _flags(factory, "hidden_by_user")
    assert {i for i, v in hidden.items() if v} == set(wip)
    assert not any(hidden[i] for i in done + theirs)
    # The hidden posts still match the filter: hiding them again changes nothing.
    resp = await _post(client, user, "action", body)
    assert (await resp.json())["changed_count"] == 0
    assert (await resp.json())["undo"] is None


async def test_a_changed_count_is_a_409_and_changes_nothing(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    await _tagged(factory, user, 4, ["wip"])
    approved = await _total(client, user, "hashtag=wip")
    # Between the count the person saw and the action: two more posts match.
    await _tagged(factory, user, 2, ["wip"])
    snapshot = await posts_state(pool)
    body = {"action": "delete", "filter": {"hashtag": ["wip"]}, "expect_count": approved}
    problem = await assert_problem(await _post(client, user, "action", body), 409)
    assert problem["count"] == 6
    assert "6" in problem["detail"] and "4" in problem["detail"]
    assert await posts_state(pool) == snapshot
    resp = await _post(client, user, "action", body | {"expect_count": 6})
    assert (await resp.json())["affected_count"] == 6


async def test_a_change_committed_while_the_action_waits_is_counted(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """A post leaves the filter in a transaction that holds its row lock while the action runs:
    the action waits for it, re-checks the row, and counts one fewer."""
    user = await factory.user()
    ids = await _tagged(factory, user, 3, ["wip"])
    body = {"action": "hide", "filter": {"hashtag": ["wip"]}, "expect_count": 3}
    async with pool.acquire() as holder:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("UPDATE posts SET hashtags = '{}' WHERE id = $1", ids[0])
        running = asyncio.ensure_future(_post(client, user, "action", body))
        await batches_waiting(pool, 1)
        await tx.commit()
    problem = await assert_problem(await asyncio.wait_for(running, 30), 409)
    assert problem["count"] == 2
    assert not any((await _flags(factory, "hidden_by_user")).values())


@pytest.fixture
async def small_client(
    aiohttp_client: AiohttpClient, settings: Settings, redis_clean: None, pool: Any
) -> Client:
    return await aiohttp_client(create_app(replace(settings, bulk_max_posts=3)))


async def test_bulk_max_posts(small_client: Client, factory: Factory, pool: asyncpg.Pool) -> None:
    user = await factory.user()
    await _tagged(factory, user, 4, ["wip"])
    snapshot = await posts_state(pool)
    for expect in (4, 3):  # the approved count above the limit, or the matching posts
        body = {"action": "hide", "filter": {"hashtag": ["wip"]}, "expect_count": expect}
        problem = await assert_problem(await _post(small_client, user, "action", body), 400)
        assert "at most 3" in problem["detail"] and "Narrow the filter" in problem["detail"]
        assert problem["errors"][0]["field"] == "filter"
    assert await posts_state(pool) == snapshot
    # A list of ids is not a filter: its own limit (128) holds.
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM posts")]
    resp = await small_client.post(
        "/api/pmd/action", json={"action": "hide", "post_ids": ids}, headers=user.auth
    )
    assert resp.status == 200


async def test_a_moderators_filter_action_is_audited_with_its_filter_and_count(
    client: Client, factory: Factory
) -> None:
    mod = await factory.user(roles=["user", "moderator"])
    owner = await factory.user()
    ids = await _tagged(factory, owner, 3, ["spam"])
    await _tagged(factory, owner, 2, ["art"])
    body = {
        "action": "hide",
        "filter": {"hashtag": ["spam"], "created_after": "2020-01-01"},
        "expect_count": 3,
        "target_sqid": owner.sqid,
    }
    resp = await _post(client, mod, "action", body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["undo"].endswith(f"?target_sqid={owner.sqid}")
    assert {i for i, v in (await _flags(factory, "hidden_by_mod")).items() if v} == set(ids)
    audit = await factory.pool.fetch("SELECT actor_id, action, target_id, note FROM audit_logs")
    assert [(a["actor_id"], a["action"], a["target_id"]) for a in audit] == [
        (mod.id, "pmd_batch_hide", str(owner.id))
    ]
    note = json.loads(audit[0]["note"])
    assert note == {
        "filter": {"hashtag": ["spam"], "created_after": "2020-01-01T00:00:00+00:00"},
        "count": 3,
        "changed": 3,
    }


async def test_restore_and_license_by_filter(client: Client, factory: Factory) -> None:
    user = await factory.user()
    ids = await _tagged(factory, user, 4, ["old"])
    resp = await _post(client, user, "action", {"action": "delete", "post_ids": ids[:3]})
    assert resp.status == 200
    # Restore by filter: the matching posts of the deleted listing.
    assert await _total(client, user, "deleted=true&hashtag=old") == 3
    body = {"action": "restore", "filter": {"hashtag": ["old"]}, "expect_count": 3}
    resp = await _post(client, user, "action", body)
    assert (await resp.json())["changed_count"] == 3
    assert not any((await _flags(factory, "deleted_by_user")).values())

    nd = await factory.license("CC-BY-NC-ND-4.0")
    body = {"filter": {"license": "none"}, "expect_count": 4, "license_id": nd}
    resp = await _post(client, user, "license", body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["message"] == "Changed license to CC-BY-NC-ND-4.0 for 4 post(s)"
    assert set((await _flags(factory, "remixable")).values()) == {False}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"filter": {"license": "NOPE"}, "expect_count": 1}, 400, "filter.license"),
        ({"filter": {"format": "jpeg"}, "expect_count": 1}, 400, "filter.format"),
        ({"filter": {"created_after": "soon"}, "expect_count": 1}, 400, "filter.created_after"),
        ({"filter": {"hashtag": "wip"}, "expect_count": 1}, 422, "filter.hashtag"),
        ({"filter": {"colour": "red"}, "expect_count": 1}, 422, "filter.colour"),
        ({"filter": {}}, 422, "expect_count"),
        ({"filter": {}, "expect_count": -1}, 422, "expect_count"),
        ({"filter": {}, "expect_count": 1, "post_ids": [1]}, 422, "post_ids"),
        ({"post_ids": [1], "expect_count": 1}, 422, "expect_count"),
    ],
)
async def test_bad_bodies_name_the_key(
    client: Client, factory: Factory, body: dict[str, Any], status: int, field: str
) -> None:
    user = await factory.user()
    resp = await _post(client, user, "action", {"action": "hide"} | body)
    problem = await assert_problem(resp, status)
    assert problem["errors"][0]["field"] == field, problem


# --- tags ---------------------------------------------------------------------------------


async def test_tags_in_bulk_keep_the_hosts_rules(client: Client, factory: Factory) -> None:
    user = await factory.user()
    ids = await _tagged(factory, user, 3, ["wip", "cats"])
    await factory.pool.execute(
        "UPDATE posts SET hashtags = '{wip,cats,nsfw}', mod_hashtags = '{nsfw}' WHERE id = $1",
        ids[0],
    )
    await factory.pool.execute("UPDATE posts SET metadata_modified_at = '2001-01-01'")
    body: dict[str, Any] = {
        "action": "tags",
        "post_ids": ids,
        "add": [" #Done", "done", "# pixel ", ""],
        "remove": ["WIP", "#nsfw"],
    }
    resp = await _post(client, user, "action", body)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["message"] == "Retagged 3 post(s)"
    tags = await _flags(factory, "hashtags")
    # Normalised as the host does; a moderator's tag stays; the artist's order kept.
    assert tags[ids[0]] == ["cats", "nsfw", "done", "pixel"]
    assert tags[ids[1]] == tags[ids[2]] == ["cats", "done", "pixel"]
    # A tag change is a metadata change: the players sync on it.
    assert {at.year for at in (await _flags(factory, "metadata_modified_at")).values()} != {2001}
    # By filter, too.
    body = {
        "action": "tags",
        "filter": {"hashtag": ["done"]},
        "expect_count": 3,
        "remove": ["done"],
    }
    resp = await _post(client, user, "action", body)
    assert (await resp.json())["changed_count"] == 3
    assert all("done" not in t for t in (await _flags(factory, "hashtags")).values())


async def test_tags_past_the_hosts_cap_are_refused_naming_the_posts(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    await pool.execute(
        "UPDATE posts SET hashtags = (SELECT array_agg('t' || g) FROM generate_series(1, 63) g)"
        " WHERE id = $1",
        ids[1],
    )
    snapshot = await pool.fetch("SELECT id, hashtags FROM posts ORDER BY id")
    body = {"action": "tags", "post_ids": ids, "add": ["a", "b"]}
    problem = await assert_problem(await _post(client, user, "action", body), 400, "too_many_tags")
    assert problem["invalid_post_ids"] == [ids[1]]
    assert "64" in problem["detail"] and "nothing was changed" in problem["detail"]
    assert await pool.fetch("SELECT id, hashtags FROM posts ORDER BY id") == snapshot
    for bad, field in (
        ({}, "add"),
        ({"add": ["x"], "remove": ["#X"]}, "remove"),
        ({"add": ["y" * 65]}, "add"),
    ):
        resp = await _post(client, user, "action", {"action": "tags", "post_ids": ids} | bad)
        assert (await assert_problem(resp, 400))["errors"][0]["field"] == field


# --- remix permission ---------------------------------------------------------------------


async def test_remixable_in_bulk_and_rule_l5(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(3)
    nd = await factory.license("CC-BY-ND-4.0")
    resp = await _post(
        client, user, "action", {"action": "remixable", "post_ids": ids, "value": False}
    )
    assert (await resp.json())["changed_count"] == 3
    await pool.execute("UPDATE posts SET license_id = $1 WHERE id = $2", nd, ids[2])
    snapshot = await pool.fetch("SELECT id, remixable FROM posts ORDER BY id")
    body = {"action": "remixable", "filter": {}, "expect_count": 3, "value": True}
    problem = await assert_problem(await _post(client, user, "action", body), 400)
    assert problem["invalid_post_ids"] == [ids[2]]
    assert "NoDerivatives" in problem["detail"] and str(ids[2]) in problem["detail"]
    assert await pool.fetch("SELECT id, remixable FROM posts ORDER BY id") == snapshot
    resp = await _post(
        client, user, "action", {"action": "remixable", "post_ids": ids[:2], "value": True}
    )
    assert (await resp.json())["changed_count"] == 2
    resp = await _post(client, user, "action", {"action": "remixable", "post_ids": ids})
    assert (await assert_problem(resp, 400))["errors"][0]["field"] == "value"


async def test_an_action_by_filter_is_planned_for_its_keys(
    factory: Factory, database_url: str
) -> None:
    """Its statement runs with a plan made for its own keys: a generic plan of the one
    statement for every combination of keys took ~2 s where this takes ~0.3 s at 10,000 posts
    (docs/benchmarks.md), so the plan, not the time, is what this holds."""
    user = await factory.user()
    ids = await _tagged(factory, user, 3, ["wip"])
    me = User(user.id, user.sqid, user.handle, f"{user.handle}@example.com", frozenset({"user"}))
    where = await check_filter(factory.pool, FilterKeys(hashtag=["wip"]))
    async with logging_pool(database_url, "pmd-test-planned") as (pool, queries):
        outcome = await batches.apply_action(
            pool,
            Principal(me, me, 0.0),
            "hide",
            batches.Matching(where, 3),
            budget=Budget(10_000, 10_000, 10_000, 10_000),
        )
    assert outcome.changed == len(ids)
    # Less the transaction's own and asyncpg's type introspection on a new connection.
    sent = [
        q
        for q in queries
        if q.strip() not in ("BEGIN;", "COMMIT;") and "jit" not in q and "typeinfo" not in q
    ]
    assert sent == [
        SQL_XACT_LOCKS,
        pace.SQL_BUDGET_USED,
        SET_CUSTOM_PLAN,
        batch_sql.statement(HIDE, moderator=False, by_filter=True),
        SQL_XACT_LOCK,
        pace.SQL_SITE_SPEND,
    ]

"""Undo of a bulk action against real PostgreSQL: each post's own previous values come back, a
post changed since is left and named, only who acted may undo, once, within 24 hours; the
daily cleanup purges the history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.features.posts.undo import SQL_PURGE_UNDO_HISTORY
from support.seeding import Factory, UserRow
from tests.helpers import acted, assert_problem, flag, mixed_licenses, posted

Client = TestClient[Any, Any]


async def _undo(client: Client, user: UserRow, link: str) -> Any:
    return await client.post(link, headers=user.auth)


async def _state(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT id, license_id, remixable, hashtags, hidden_by_user, deleted_by_user"
        " FROM posts ORDER BY id"
    )
    return [tuple(r) for r in rows]


async def test_undo_puts_back_each_posts_own_values(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(3)
    _, _, nd = await mixed_licenses(factory, ids[:1], ids[1:2])
    await pool.execute("UPDATE posts SET hashtags = '{a,b}'")
    before = await _state(pool)

    answer = await posted(
        client, user, "license", {"filter": {}, "expect_count": 3, "license_id": nd}
    )
    retag = await acted(client, user, "tags", ids, add=["c"], remove=["a"])
    assert await _state(pool) != before
    # Undo in reverse order: the tags, then the license (with each post's remix permission).
    resp = await _undo(client, user, retag["undo"])
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == {
        "success": True,
        "affected_count": 3,
        "message": "Undid the tag change of 3 posts",
        "left_post_ids": [],
        "undone": True,
    }
    # The undo is itself a bulk write: the players see it. The stamps the actions bumped are set
    # back an hour, so only the undo's own bump makes them fresh.
    await pool.execute(
        "UPDATE posts SET metadata_modified_at = now() - interval '1 hour',"
        " updated_at = now() - interval '1 hour' WHERE id = ANY($1::int[])",
        ids,
    )
    resp = await _undo(client, user, answer["undo"])
    assert (await resp.json())["affected_count"] == 3
    assert await _state(pool) == before
    bumped = await pool.fetchval(
        "SELECT count(*) FROM posts WHERE id = ANY($1::int[])"
        " AND metadata_modified_at > now() - interval '1 minute'"
        " AND updated_at > now() - interval '1 minute'",
        ids,
    )
    assert bumped == len(ids)


async def test_a_post_changed_since_is_left_and_named(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(3)
    hid = await acted(client, user, "hide", ids)
    # Later: the host's own edit unhides one post, a second bulk action unhides another, and the
    # third is retitled and retagged (not what the hide changed: it is undone all the same).
    await pool.execute(
        "UPDATE posts SET hidden_by_user = false, metadata_modified_at = now() WHERE id = $1",
        ids[0],
    )
    await pool.execute("UPDATE posts SET title = 'renamed', hashtags = '{x}' WHERE id = $1", ids[2])
    await acted(client, user, "unhide", ids[1:2])
    resp = await _undo(client, user, hid["undo"])
    body = await resp.json()
    assert body["affected_count"] == 1
    assert body["left_post_ids"] == ids[:2]
    assert f"{ids[0]}, {ids[1]}" in body["message"] and "left as they are" in body["message"]
    assert await flag(factory, "hidden_by_user", ids) == [False, False, False]


async def test_an_undo_that_put_nothing_back_says_so_and_stays_offered(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    hid = await acted(client, user, "hide", ids)
    unhid = await acted(client, user, "unhide", ids)
    resp = await _undo(client, user, hid["undo"])
    body = await resp.json()
    assert body["affected_count"] == 0 and body["left_post_ids"] == ids
    assert body["undone"] is False and body["message"].startswith("Nothing to undo")
    listed = await client.get("/api/pmd/actions", headers=user.auth)
    offered = {a["id"]: a for a in (await listed.json())["items"]}
    hid_id = hid["undo"].split("/")[-2]
    assert offered[hid_id]["undone_at"] is None and offered[hid_id]["undo"] == hid["undo"]
    # Once the posts are as the hide left them again, the same undo puts them back.
    assert (await (await _undo(client, user, unhid["undo"])).json())["undone"] is True
    body = await (await _undo(client, user, hid["undo"])).json()
    assert body["affected_count"] == 2 and body["undone"] is True
    assert await flag(factory, "hidden_by_user", ids) == [False, False]


async def test_undo_of_a_delete_restores_and_of_a_moderators_restore_marks_again(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    deleted = await acted(client, user, "delete", ids)
    resp = await _undo(client, user, deleted["undo"])
    assert (await resp.json())["affected_count"] == 2
    assert not any(f["deleted_by_user"] for f in (await factory.post_flags(ids)).values())

    mod = await factory.user(roles=["user", "moderator"])
    as_mod = {"target_sqid": user.sqid}
    await acted(client, mod, "delete", ids, **as_mod)
    restored = await acted(client, mod, "restore", ids, **as_mod)
    # The owner cannot undo a moderator's action.
    link = restored["undo"].split("?")[0]
    assert (await _undo(client, user, link)).status == 404
    resp = await _undo(client, mod, restored["undo"])
    assert (await resp.json())["affected_count"] == 2
    marked = await pool.fetchval(
        "SELECT array_agg(post_id ORDER BY post_id) FROM moderator_deletions"
    )
    assert marked == ids
    audit = await pool.fetch("SELECT action FROM audit_logs ORDER BY created_at")
    assert [a["action"] for a in audit][-1] == "pmd_batch_undo"


async def test_once_within_24_hours_by_who_acted(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    stranger = await factory.user()
    first = await acted(client, user, "hide", ids[:1])
    second = await acted(client, user, "hide", ids[1:])
    assert (await _undo(client, stranger, first["undo"])).status == 404
    assert (await _undo(client, user, first["undo"])).status == 200
    problem = await assert_problem(await _undo(client, user, first["undo"]), 409)
    assert "undone already" in problem["detail"]
    await pool.execute("UPDATE bulk_actions SET created_at = now() - interval '25 hours'")
    problem = await assert_problem(await _undo(client, user, second["undo"]), 410)
    assert "24 hours" in problem["detail"]
    assert (await _undo(client, user, "/api/pmd/actions/not-a-uuid/undo")).status == 400
    # The daily cleanup's purge (as of its plan's clock): the history past its window goes,
    # with its posts.
    await pool.execute(*SQL_PURGE_UNDO_HISTORY.bind({"clock": datetime.now(UTC)}))
    assert await pool.fetchval("SELECT count(*) FROM bulk_actions") == 0
    assert await pool.fetchval("SELECT count(*) FROM bulk_action_posts") == 0


async def test_the_previous_releases_undo_of_a_kept_action_is_refused_as_a_retry(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """Mid-roll, a server of the previous release undoes by setting `undone_at` alone: it would
    put nothing back, so the database refuses it with the code that release answers 503 +
    Retry-After to, and the retry on this release undoes it."""
    user = await factory.user()
    ids = await factory.posts_bulk(user, 2)
    hid = await acted(client, user, "hide", ids)
    action_id = hid["undo"].split("?")[0].rstrip("/").split("/")[-2]
    with pytest.raises(asyncpg.CannotConnectNowError, match="newer release"):
        await pool.execute("UPDATE bulk_actions SET undone_at = now() WHERE id = $1", action_id)
    assert await pool.fetchval("SELECT count(*) FROM posts WHERE hidden_by_user") == 2
    resp = await _undo(client, user, hid["undo"])
    assert resp.status == 200, await resp.text()
    assert await pool.fetchval("SELECT count(*) FROM posts WHERE hidden_by_user") == 0

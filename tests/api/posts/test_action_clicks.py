"""One click, one entry, against real PostgreSQL and Redis: the batches a client sends for one
selection name the click they belong to (`click_id`), and those of one person, one action and
one owner's posts within the undo window are one entry in the history with one undo that puts
back every post of every batch, each to its own values, a post changed since left and named,
refused whole by the budget or a clash."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from tests.helpers import acted, assert_problem, flag, mixed_licenses, posted, undone

Client = TestClient[Any, Any]

_ART = "a" * 64  # an artwork's hash (the host's sha256, hex)


def _batches(ids: list[int], size: int = 128) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


async def _clicked(
    client: Client, user: UserRow, path: str, ids: list[int], click: uuid.UUID, **body: Any
) -> list[Any]:
    """One click over `ids`, sent as the page sends it: batches of 128 naming the click."""
    return [
        await posted(client, user, path, {"post_ids": part, "click_id": str(click), **body})
        for part in _batches(ids)
    ]


async def _entries(client: Client, user: UserRow, **query: Any) -> list[Any]:
    resp = await client.get("/api/pmd/actions", params=query, headers=user.auth)
    assert resp.status == 200, await resp.text()
    items: list[Any] = (await resp.json())["items"]
    return items


async def test_one_click_over_many_batches_is_one_entry_with_one_undo_for_all(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(300)
    # Ten posts of the last batch are hidden already: the click finds them so.
    await pool.execute(
        "UPDATE posts SET hidden_by_user = true WHERE id = ANY($1::int[])", ids[-10:]
    )
    answers = await _clicked(client, user, "action", ids, uuid.uuid4(), action="hide")
    assert [a["changed_count"] for a in answers] == [128, 128, 34]
    # Every batch answers the click's one undo.
    assert len({a["undo"] for a in answers}) == 1

    (entry,) = await _entries(client, user)
    assert entry["action"] == "hide"
    assert entry["changed_count"] == 290 and entry["unchanged_count"] == 10
    assert entry["undo"] == answers[0]["undo"] and entry["undone_at"] is None
    assert [p["id"] for p in entry["posts"]] == ids[:3]

    body = await undone(client, user, entry["undo"])
    assert body == {
        "success": True,
        "affected_count": 290,
        "message": "Undid the hide of 290 posts",
        "left_post_ids": [],
        "undone": True,
    }
    assert await flag(factory, "hidden_by_user", ids) == [False] * 290 + [True] * 10
    (entry,) = await _entries(client, user)
    assert entry["undone_at"] is not None and entry["undo"] is None
    # Once: the click is undone, whichever of its batches the link names.
    resp = await client.post(answers[-1]["undo"], headers=user.auth)
    await assert_problem(resp, 409, "already_undone")


async def test_a_clicks_undo_puts_back_each_posts_own_values_and_leaves_one_changed_since(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(200)
    by, _, nd = await mixed_licenses(factory, ids[::2], ids[1::3])
    before = await pool.fetch(
        "SELECT id, license_id, remixable FROM posts WHERE id = ANY($1::int[]) ORDER BY id", ids
    )
    answers = await _clicked(client, user, "license", ids, uuid.uuid4(), license_id=nd)
    assert sum(a["changed_count"] for a in answers) == 200
    # The host's own edit changes one post of each batch meanwhile.
    changed = [ids[5], ids[150]]
    await pool.execute("UPDATE posts SET license_id = $1 WHERE id = ANY($2::int[])", by, changed)

    (entry,) = await _entries(client, user)
    assert entry["action"] == "license" and entry["changed_count"] == 200
    body = await undone(client, user, entry["undo"])
    assert body["affected_count"] == 198 and body["left_post_ids"] == changed
    assert f"posts {changed[0]}, {changed[1]} changed again since" in body["message"]
    after = await pool.fetch(
        "SELECT id, license_id, remixable FROM posts WHERE id = ANY($1::int[]) ORDER BY id", ids
    )
    kept = [tuple(r) for r in before if r["id"] not in changed]
    assert [tuple(r) for r in after if r["id"] not in changed] == kept


async def test_only_one_persons_batches_of_one_action_within_the_window_join_a_click(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(8)
    mod = await factory.user(roles=["user", "moderator"])
    other, others = await factory.owner_and_bulk(1)
    click = uuid.uuid4()
    own = await _clicked(client, user, "action", ids[:1], click, action="hide")
    again = await _clicked(client, user, "action", ids[1:2], click, action="hide")
    tagged = await _clicked(client, user, "action", ids[2:3], click, action="tags", add=["x"])
    modded = await _clicked(
        client, mod, "action", ids[3:4], click, action="hide", target_sqid=user.sqid
    )
    theirs = await _clicked(client, other, "action", others, click, action="hide")
    alone = await acted(client, user, "hide", ids[4:5])
    # A batch naming a click whose batches are past the undo window starts the click anew.
    await pool.execute(
        "UPDATE bulk_actions SET created_at = now() - interval '24 hours 1 minute'"
        " WHERE click_id = $1 AND owner_id = $2 AND action = 'tags'",
        click,
        user.id,
    )
    later = await _clicked(client, user, "action", ids[5:6], click, action="tags", add=["x"])

    assert again[0]["undo"] == own[0]["undo"]
    links = [own[0]["undo"], tagged[0]["undo"], modded[0]["undo"], alone["undo"]]
    assert len({*links, later[0]["undo"], theirs[0]["undo"]}) == 6
    # The retag past the window is not listed; the later one is an entry of its own.
    entries = await _entries(client, user)
    assert [e["undo"] for e in entries] == [
        later[0]["undo"],
        alone["undo"],
        None,  # a moderator's: never the owner's to undo
        own[0]["undo"],
    ]
    assert [e["changed_count"] for e in entries] == [1, 1, 1, 2]
    assert [e["action"] for e in entries] == ["tags", "hide", "hide", "hide"]
    assert [e["by_moderator"] for e in entries] == [False, False, True, False]
    assert (await _entries(client, other))[0]["changed_count"] == 1

    # Each undo is its own: the owner's click puts back its two batches, nothing else.
    assert (await undone(client, user, own[0]["undo"]))["affected_count"] == 2
    assert await flag(factory, "hidden_by_user", ids[:6]) == [
        False,
        False,
        False,
        False,
        True,
        False,
    ]
    assert await flag(factory, "hidden_by_mod", ids[3:4]) == [True]
    assert await flag(factory, "hidden_by_user", others) == [True]


async def test_a_click_id_is_a_uuid_and_goes_with_post_ids_only(
    client: Client, factory: Factory
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    for body in (
        {"action": "hide", "filter": {}, "expect_count": 2, "click_id": str(uuid.uuid4())},
        {"action": "hide", "post_ids": ids, "click_id": "one"},
    ):
        resp = await client.post("/api/pmd/action", json=body, headers=user.auth)
        await assert_problem(resp, 422)
    assert await flag(factory, "hidden_by_user", ids) == [False, False]


Made = Callable[..., Awaitable[Client]]


@pytest.fixture
def made(aiohttp_client: AiohttpClient, settings: Settings, redis_clean: None) -> Made:
    """A client of a new app with `changes` to the test's settings, made when the test asks."""
    return lambda **changes: aiohttp_client(
        create_app(msgspec.structs.replace(settings, **changes))
    )


async def test_a_clicks_undo_over_the_budget_is_refused_whole(made: Made, factory: Factory) -> None:
    # Room for the click's 256 posts and 144 more: the undo of its newest batch would fit.
    client = await made(
        bulk_max_posts=400, bulk_changed_posts_per_minute=400, bulk_changed_posts_per_hour=10_000
    )
    user, ids = await factory.owner_and_bulk(256)
    answers = await _clicked(client, user, "action", ids, uuid.uuid4(), action="hide")
    resp = await client.post(answers[0]["undo"], headers=user.auth)
    problem = await assert_problem(resp, 429, "row_budget_exceeded")
    assert problem["details"]["requested"] == 256
    assert await flag(factory, "hidden_by_user", ids) == [True] * 256
    assert (await _entries(client, user))[0]["undo"] == answers[0]["undo"]


async def test_a_clicks_undo_that_would_restore_an_artwork_held_again_changes_nothing(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(200)
    await pool.execute("UPDATE posts SET hash = $1 WHERE id = $2", _ART, ids[0])
    answers = await _clicked(client, user, "action", ids, uuid.uuid4(), action="delete")
    # The artist uploads the first batch's artwork again: the site keeps one live post of it.
    again = await factory.post(user, title="again", hash=_ART)
    resp = await client.post(answers[-1]["undo"], headers=user.auth)
    problem = await assert_problem(resp, 409)
    assert [c["post_id"] for c in problem["conflicts"]] == [ids[0]]
    assert problem["conflicts"][0]["held_by"]["post_id"] == again.id
    # The newest batch, undone first, was put back with the rest: nothing changed.
    assert await flag(factory, "deleted_by_user", ids) == [True] * 200
    (entry,) = await _entries(client, user)
    assert entry["undo"] == answers[0]["undo"]

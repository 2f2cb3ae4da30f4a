"""The list of recent bulk actions (GET /api/pmd/actions) against real PostgreSQL and Redis: the
undo window's actions on the caller's (a moderator: the target's) posts, newest first, each
with the undo link its own answer gave while the caller may undo it, and none otherwise."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from pmd_service.features.posts.undo import KEPT_HISTORY_BYTES
from support.seeding import Factory, UserRow
from tests.helpers import assert_problem

Client = TestClient[Any, Any]


async def _act(client: Client, user: UserRow, path: str, body: dict[str, Any]) -> Any:
    resp = await client.post(f"/api/pmd/{path}", json=body, headers=user.auth)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _list(client: Client, user: UserRow, **query: Any) -> Any:
    resp = await client.get("/api/pmd/actions", params=query, headers=user.auth)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def _id(answer: Any) -> str:
    link: str = answer["undo"]
    return link.split("/")[-2]


async def test_the_owner_sees_each_action_newest_first_with_its_undo_link(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(3)
    cc = await factory.license("CC-BY-4.0")
    hid = await _act(client, user, "action", {"action": "hide", "post_ids": ids})
    relicensed = await _act(client, user, "license", {"post_ids": ids[:2], "license_id": cc})
    # Changing nothing (hiding what is hidden) is no action: nothing to undo, nothing listed.
    await _act(client, user, "action", {"action": "hide", "post_ids": ids})

    body = await _list(client, user)
    assert body["next_cursor"] is None
    assert [i["id"] for i in body["items"]] == [_id(relicensed), _id(hid)]
    first = body["items"][0]
    assert first["action"] == "license" and first["changed_count"] == 2
    assert first["by_moderator"] is False and first["by_you"] is True
    assert first["undone_at"] is None
    assert [i["undo"] for i in body["items"]] == [relicensed["undo"], hid["undo"]]
    assert body["items"][1]["action"] == "hide" and body["items"][1]["changed_count"] == 3

    # The listed link undoes; then the action shows undone, without a link.
    resp = await client.post(body["items"][1]["undo"], headers=user.auth)
    assert resp.status == 200, await resp.text()
    undone = (await _list(client, user))["items"][1]
    assert undone["undone_at"] is not None and undone["undo"] is None


async def test_an_action_past_24_hours_is_not_listed_and_one_whose_history_went_has_no_link(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(3)
    old = await _act(client, user, "action", {"action": "hide", "post_ids": ids[:1]})
    dropped = await _act(client, user, "action", {"action": "hide", "post_ids": ids[1:2]})
    await pool.execute(
        "UPDATE bulk_actions SET created_at = now() - interval '24 hours 1 minute'"
        " WHERE id = $1::uuid",
        _id(old),
    )
    # The next action passes the owner's cap: the older history is dropped (its row stays).
    await pool.execute(
        "UPDATE bulk_actions SET history_bytes = $1 WHERE id = $2::uuid",
        KEPT_HISTORY_BYTES,
        _id(dropped),
    )
    kept = await _act(client, user, "action", {"action": "hide", "post_ids": ids[2:]})
    items = (await _list(client, user))["items"]
    assert [i["id"] for i in items] == [_id(kept), _id(dropped)]
    assert items[0]["undo"] == kept["undo"]
    assert items[1]["undo"] is None and items[1]["undone_at"] is None
    # The undo agrees: the old one is past its window, the dropped one's history is gone.
    await assert_problem(await client.post(old["undo"], headers=user.auth), 410)
    await assert_problem(await client.post(dropped["undo"], headers=user.auth), 410)


async def test_a_moderators_action_shows_to_the_owner_without_undo_and_to_the_moderator_with(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    mod = await factory.user(roles=["user", "moderator"])
    other_mod = await factory.user(roles=["user", "moderator"])
    ids = await factory.posts_bulk(user, 2)
    own = await _act(client, user, "action", {"action": "hide", "post_ids": ids[:1]})
    as_mod = {"target_sqid": user.sqid}
    modded = await _act(client, mod, "action", {"action": "hide", "post_ids": ids} | as_mod)
    assert modded["undo"].endswith(f"?target_sqid={user.sqid}")

    # The owner: the moderator's action, marked as such, never theirs to undo.
    items = (await _list(client, user))["items"]
    assert [i["id"] for i in items] == [_id(modded), _id(own)]
    assert items[0]["by_moderator"] is True and items[0]["by_you"] is False
    assert items[0]["undo"] is None and items[0]["changed_count"] == 2
    assert items[1]["undo"] == own["undo"]

    # The moderator on the owner's posts: every action there, only their own to undo, with
    # the very link their action's answer gave.
    items = (await _list(client, mod, target_sqid=user.sqid))["items"]
    assert [i["id"] for i in items] == [_id(modded), _id(own)]
    assert items[0]["by_you"] is True and items[0]["undo"] == modded["undo"]
    assert items[1]["by_moderator"] is False and items[1]["undo"] is None
    # Another moderator sees both and may undo neither.
    items = (await _list(client, other_mod, target_sqid=user.sqid))["items"]
    assert [i["undo"] for i in items] == [None, None]
    assert [i["by_you"] for i in items] == [False, False]
    # A moderator's own list is of their own posts: none of the owner's actions.
    assert (await _list(client, mod))["items"] == []

    resp = await client.post(modded["undo"], headers=mod.auth)
    assert resp.status == 200, await resp.text()
    items = (await _list(client, mod, target_sqid=user.sqid))["items"]
    assert items[0]["undone_at"] is not None and items[0]["undo"] is None


async def test_another_user_sees_none_of_them(client: Client, factory: Factory) -> None:
    user = await factory.user()
    stranger = await factory.user()
    mod = await factory.user(roles=["user", "moderator"])
    ids = await factory.posts_bulk(user, 1)
    await _act(client, user, "action", {"action": "hide", "post_ids": ids})
    assert (await _list(client, stranger))["items"] == []
    resp = await client.get(
        "/api/pmd/actions", params={"target_sqid": user.sqid}, headers=stranger.auth
    )
    await assert_problem(resp, 403)
    resp = await client.get("/api/pmd/actions", params={"target_sqid": "zzzzzz"}, headers=mod.auth)
    await assert_problem(resp, 404)
    resp = await client.get("/api/pmd/actions")
    await assert_problem(resp, 401)


async def test_pages_of_50_walk_every_action_once_newest_first(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    other = await factory.user()
    # 60 actions of the owner, ten of them at the very same time (the id orders them), and one
    # of someone else's among them.
    await pool.execute(
        "INSERT INTO bulk_actions (owner_id, action, changed_count, created_at, post_ids)"
        " SELECT $1, 'hide', n, now() - make_interval(secs => least(n, 50)), '{1}'"
        " FROM generate_series(1, 60) AS n",
        user.id,
    )
    await pool.execute(
        "INSERT INTO bulk_actions (owner_id, action, changed_count, created_at, post_ids)"
        " VALUES ($1, 'hide', 1, now() - interval '30 seconds', '{1}')",
        other.id,
    )
    expected = [
        r["id"]
        for r in await pool.fetch(
            "SELECT id::text FROM bulk_actions WHERE owner_id = $1"
            " ORDER BY created_at DESC, id DESC",
            user.id,
        )
    ]
    first = await _list(client, user)
    assert len(first["items"]) == 50 and first["next_cursor"]
    second = await _list(client, user, cursor=first["next_cursor"])
    assert second["next_cursor"] is None
    assert [i["id"] for i in first["items"] + second["items"]] == expected
    small = await _list(client, user, limit=7)
    assert [i["id"] for i in small["items"]] == expected[:7]

    for query, field in (
        ({"cursor": "nope"}, "cursor"),
        ({"cursor": first["next_cursor"][:-2]}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "51"}, "limit"),
    ):
        resp = await client.get("/api/pmd/actions", params=query, headers=user.auth)
        problem = await assert_problem(resp, 400)
        assert [e["field"] for e in problem["errors"]] == [field], problem


async def test_each_action_names_its_first_posts_by_title(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(5)
    titles = {
        r["id"]: r["title"]
        for r in await pool.fetch("SELECT id, title FROM posts WHERE id = ANY($1)", ids)
    }
    await _act(client, user, "action", {"action": "hide", "post_ids": ids})
    one = await _act(client, user, "action", {"action": "delete", "post_ids": ids[:1]})

    latest, hid = (await _list(client, user))["items"]
    assert latest["posts"] == [{"id": ids[0], "title": titles[ids[0]]}]
    # At most three named, each one of the action's own, by its title; the count says the rest.
    assert len(hid["posts"]) == 3 and hid["changed_count"] == 5
    assert {p["id"] for p in hid["posts"]} <= set(ids)
    assert all(p["title"] == titles[p["id"]] for p in hid["posts"])

    # An undone action keeps no history, so it names none.
    resp = await client.post(one["undo"], headers=user.auth)
    assert resp.status == 200, await resp.text()
    assert (await _list(client, user))["items"][0]["posts"] == []


async def test_each_action_counts_the_posts_it_found_already_so_as_its_answer_did(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(9)
    await pool.execute("UPDATE posts SET hashtags = '{wip}' WHERE id = ANY($1)", ids[:7])
    # Three of the seven tagged posts, and one untagged, hidden already.
    await pool.execute("UPDATE posts SET hidden_by_user = true WHERE id = ANY($1)", ids[4:8])
    by_ids = await _act(client, user, "action", {"action": "hide", "post_ids": ids[6:]})
    body = {"action": "hide", "filter": {"hashtag": ["wip"]}, "expect_count": 7}
    by_filter = await _act(client, user, "action", body)
    restore = {"action": "restore", "post_ids": ids[:2]}
    await _act(client, user, "action", {"action": "delete", "post_ids": ids[:1]})
    restored = await _act(client, user, "action", restore)

    items = {i["id"]: i for i in (await _list(client, user))["items"]}
    for answer in (by_ids, by_filter, restored):
        item = items[_id(answer)]
        assert item["changed_count"] == answer["changed_count"]
        assert item["unchanged_count"] == answer["affected_count"] - answer["changed_count"]
    assert [items[_id(a)]["unchanged_count"] for a in (by_ids, by_filter, restored)] == [2, 3, 1]
    assert items[_id(by_filter)]["changed_count"] == 4

    # An action recorded before the service counted them says nothing rather than 0.
    await pool.execute(
        "UPDATE bulk_actions SET unchanged_count = NULL WHERE owner_id = $1", user.id
    )
    assert {i["unchanged_count"] for i in (await _list(client, user))["items"]} == {None}

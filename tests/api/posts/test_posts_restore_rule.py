"""The host's restore rule and the approvals that name their set, against real PostgreSQL: a
deleted post whose artwork hash a live post holds (the host's `uq_posts_hash_active`) is marked
in the deleted listing, refused whole by a restore by ids (also when the upload races the
restore and on the host's own schema) and left, reported, by a restore by filter, which
restores the others; a refusal names the live post only when it is the owner's own; the
deleted listing's count and its restore by filter agree about a post a moderator deleted; an
action by filter with `expect_digest` acts only on the set the person saw."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seeding import Factory, HostSite, UserRow, posts_state
from tests.api.host.test_host_schema import beside_host
from tests.helpers import assert_problem, eventually, flag, posts_page

Client = TestClient[Any, Any]

__all__ = ["beside_host"]  # the host-schema fixture, used below

_ART = "a" * 64  # an artwork's hash (the host's sha256, hex)


async def _post(client: Client, user: UserRow, body: dict[str, Any], query: str = "") -> Any:
    return await client.post(f"/api/pmd/action{query}", json=body, headers=user.auth)


async def _done(client: Client, user: UserRow, body: dict[str, Any], query: str = "") -> Any:
    """The answer of an action that succeeds."""
    resp = await _post(client, user, body, query)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def _restore_all(page: dict[str, Any]) -> dict[str, Any]:
    """A restore by filter of the deleted listing `page`, approving its count and set."""
    count, digest = page["total_count"], page["match_digest"]
    return {"action": "restore", "filter": {}, "expect_count": count, "expect_digest": digest}


async def _deleted_with_hash(
    factory: Factory, owner: UserRow, hashes: list[str | None], *, ago: timedelta
) -> list[int]:
    ids = await factory.posts_bulk(owner, len(hashes))
    await factory.pool.execute(
        "UPDATE posts p SET hash = h.hash, deleted_by_user = true, deleted_by_user_date = $3"
        " FROM unnest($1::int[], $2::text[]) AS h(id, hash) WHERE p.id = h.id",
        ids,
        hashes,
        datetime.now(UTC) - ago,
    )
    return ids


async def test_a_reuploaded_artwork_is_marked_and_never_restored(
    client: Client, factory: Factory
) -> None:
    owner = await factory.user()
    mod = await factory.user(roles=["user", "moderator"])
    old, free = await _deleted_with_hash(factory, owner, [_ART, "b" * 64], ago=timedelta(days=1))
    # The artist uploads the same artwork again: the host freed its hash at the delete.
    new = await factory.post(owner, title="again", hash=_ART)

    page = await posts_page(client, owner, "deleted=true")
    marks = {i["id"]: (i["restorable"], i["restore_refusal"], i["held_by"]) for i in page["items"]}
    assert marks == {
        old: (False, "artwork-reuploaded", {"post_id": new.id, "public_sqid": new.sqid}),
        free: (True, None, None),
    }
    live = await posts_page(client, owner)
    assert [(i["restorable"], i["held_by"]) for i in live["items"]] == [(None, None)]

    before = await posts_state(factory.pool)
    as_mod = f"?target_sqid={owner.sqid}"
    # By ids the person named the post: the whole restore is refused, naming it.
    attempts: list[tuple[UserRow, dict[str, Any], str]] = [
        (owner, {"action": "restore", "post_ids": [free, old]}, ""),
        (mod, {"action": "restore", "post_ids": [old]}, as_mod),
    ]
    sqid = await factory.pool.fetchval("SELECT public_sqid FROM posts WHERE id = $1", old)
    for caller, body, query in attempts:
        problem = await assert_problem(
            await _post(client, caller, body, query), 409, "artwork_reuploaded"
        )
        assert problem["type"].endswith("artwork-reuploaded"), problem
        assert problem["conflicts"] == [
            {
                "post_id": old,
                "public_sqid": sqid,
                "held_by": {"post_id": new.id, "public_sqid": new.sqid, "live": True},
            }
        ]
        assert await posts_state(factory.pool) == before  # all or nothing

    # By filter ("restore all"), the other post is restored and this one left, reported.
    body = _restore_all(page)
    answer = await _done(client, owner, body)
    assert (answer["affected_count"], answer["changed_count"], answer["left_count"]) == (1, 1, 1)
    assert answer["left"] == [{"reason": "artwork-reuploaded", "count": 1, "post_ids": [old]}]
    flags = await factory.post_flags([old, free])
    assert (flags[old]["deleted_by_user"], flags[free]["deleted_by_user"]) == (True, False)
    # The moderator's restore all leaves it too: nothing to restore, and said so.
    left = await posts_page(client, mod, f"deleted=true&{as_mod[1:]}")
    body = {"action": "restore", "filter": {}, "expect_count": left["total_count"]}
    answer = await _done(client, mod, body, as_mod)
    assert (answer["affected_count"], answer["left_count"], answer["undo"]) == (0, 1, None)
    assert (await factory.post_flags([old]))[old]["deleted_by_user"] is True


async def test_another_users_post_holding_the_artwork_is_never_named(
    client: Client, factory: Factory
) -> None:
    """The listing, a restore by ids, a restore by filter and the undo of the delete all say the
    artwork is now another post, and none carries that post's id, sqid or title."""
    owner, (mine, gone) = await factory.owner_and_bulk(2)
    mod = await factory.user(roles=["user", "moderator"])
    await factory.pool.execute("UPDATE posts SET hash = $2 WHERE id = $1", mine, _ART)
    await _done(client, owner, {"action": "delete", "post_ids": [mine, gone]})
    # Another user uploads the same artwork, and it is hidden by them and by a moderator.
    stranger = await factory.user()
    theirs = await factory.post(
        stranger, title="bxHidden1", hash=_ART, id=987654, hidden_by_user=True, hidden_by_mod=True
    )
    secrets = (str(theirs.id), str(theirs.sqid), "bxHidden1")

    def unnamed(text: str) -> None:
        for secret in secrets:
            assert secret not in text, (secret, text)

    as_mod = f"target_sqid={owner.sqid}"
    for caller, query in ((owner, ""), (mod, as_mod)):
        listed = await client.get(f"/api/pmd/posts?deleted=true&{query}", headers=caller.auth)
        text = await listed.text()
        assert listed.status == 200, text
        unnamed(text)
        (item,) = [i for i in (await listed.json())["items"] if i["id"] == mine]
        assert (item["restorable"], item["restore_refusal"], item["held_by"]) == (
            False,
            "artwork-reuploaded",
            None,
        )

    before = await posts_state(factory.pool)
    for caller, query in ((owner, ""), (mod, f"?{as_mod}")):
        refused = await _post(client, caller, {"action": "restore", "post_ids": [mine]}, query)
        text = await refused.text()
        unnamed(text)
        problem = await assert_problem(refused, 409, "artwork_reuploaded")
        assert problem["conflicts"] == [
            {"post_id": mine, "public_sqid": await _sqid(factory, mine), "held_by": None}
        ]
        assert "the same artwork is now another post" in problem["detail"]
        assert await posts_state(factory.pool) == before

    ok = await _post(client, owner, {"action": "restore", "filter": {}, "expect_count": 2})
    text = await ok.text()
    assert ok.status == 200, text
    unnamed(text)
    assert (await ok.json())["left"] == [
        {"reason": "artwork-reuploaded", "count": 1, "post_ids": [mine]}
    ]
    # Deleted again, and the delete undone: refused whole, the other post unnamed.
    await _done(client, owner, {"action": "delete", "post_ids": [gone]})
    deleted_both = await factory.pool.fetchval(
        "SELECT id FROM bulk_actions WHERE owner_id = $1 AND action = 'delete'"
        " ORDER BY created_at LIMIT 1",
        owner.id,
    )
    undo = await client.post(f"/api/pmd/actions/{deleted_both}/undo", headers=owner.auth)
    text = await undo.text()
    unnamed(text)
    problem = await assert_problem(undo, 409, "artwork_reuploaded")
    assert [c["held_by"] for c in problem["conflicts"]] == [None]


async def _sqid(factory: Factory, post_id: int) -> str:
    sqid: str = await factory.pool.fetchval("SELECT public_sqid FROM posts WHERE id = $1", post_id)
    return sqid


async def test_two_deleted_posts_of_one_artwork_are_not_restored_together(
    client: Client, factory: Factory
) -> None:
    owner = await factory.user()
    first, second = await _deleted_with_hash(factory, owner, [_ART, _ART], ago=timedelta(hours=1))
    (third,) = await _deleted_with_hash(factory, owner, ["c" * 64], ago=timedelta(hours=1))
    before = await posts_state(factory.pool)
    problem = await assert_problem(
        await _post(client, owner, {"action": "restore", "post_ids": [first, second]}), 409
    )
    # Each is named with the other: only one of them can be live.
    assert [
        (c["post_id"], c["held_by"]["post_id"], c["held_by"]["live"]) for c in problem["conflicts"]
    ] == [(first, second, False), (second, first, False)]
    assert await posts_state(factory.pool) == before
    # Restore all: which of the two to bring back is the person's choice, so both stay, said.
    body = {"action": "restore", "filter": {}, "expect_count": 3}
    answer = await _done(client, owner, body)
    assert (answer["affected_count"], answer["left_count"]) == (1, 2)
    assert answer["left"] == [{"reason": "same-artwork", "count": 2, "post_ids": [first, second]}]
    flags = await factory.post_flags([first, second, third])
    assert [flags[i]["deleted_by_user"] for i in (first, second, third)] == [True, True, False]
    await _done(client, owner, {"action": "restore", "post_ids": [second]})
    # Now the other one's artwork is live again: refused, naming it.
    problem = await assert_problem(
        await _post(client, owner, {"action": "restore", "post_ids": [first]}), 409
    )
    assert problem["conflicts"][0]["held_by"]["post_id"] == second


async def test_an_upload_racing_the_restore_is_the_same_409(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """The upload commits after the restore's snapshot and before its update: the unique index
    refuses the update; the answer is the named 409 and nothing changed."""
    owner = await factory.user()
    (old,) = await _deleted_with_hash(factory, owner, [_ART], ago=timedelta(hours=1))
    upload = await pool.acquire()
    try:
        tx = upload.transaction()
        await tx.start()
        new_id = await upload.fetchval(
            "INSERT INTO posts (owner_id, title, hash) VALUES ($1, 'again', $2) RETURNING id",
            owner.id,
            _ART,
        )
        restoring = asyncio.create_task(
            _post(client, owner, {"action": "restore", "post_ids": [old]})
        )

        async def waits_on_the_upload() -> bool:
            n: int = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%WITH eligible%'"
            )
            return n > 0

        await eventually(waits_on_the_upload, 30, lambda: "the restore never met the upload")
        await tx.commit()
    finally:
        await pool.release(upload)
    problem = await assert_problem(await restoring, 409, "artwork_reuploaded")
    assert problem["conflicts"][0]["post_id"] == old
    assert problem["conflicts"][0]["held_by"]["post_id"] == new_id
    assert await pool.fetchval("SELECT deleted_by_user FROM posts WHERE id = $1", old) is True


async def test_the_deleted_listing_and_its_restore_agree_on_a_moderators_delete(
    client: Client, factory: Factory
) -> None:
    """Select all → Restore in Recently deleted: the count the page approves is the listing's;
    the owner's restore by filter restores the others and reports the post only a moderator
    may restore (by ids, naming it is still a 400 that changes nothing)."""
    owner, ids = await factory.owner_and_bulk(3)
    mod = await factory.user(roles=["user", "moderator"])
    await _done(client, owner, {"action": "delete", "post_ids": ids[:2]})
    await _done(
        client, mod, {"action": "delete", "post_ids": ids[2:]}, f"?target_sqid={owner.sqid}"
    )

    page = await posts_page(client, owner, "deleted=true")
    assert page["total_count"] == 3
    marks = {i["id"]: (i["restorable"], i["restore_refusal"]) for i in page["items"]}
    assert marks == {
        ids[0]: (True, None),
        ids[1]: (True, None),
        ids[2]: (False, "deleted-by-moderator"),
    }
    before = await posts_state(factory.pool)
    by_ids = {"action": "restore", "post_ids": ids}
    problem = await assert_problem(await _post(client, owner, by_ids), 400)
    assert problem["invalid_post_ids"] == [ids[2]] and "moderator" in problem["detail"]
    assert await posts_state(factory.pool) == before

    # The moderator's listing counts the same three, each restorable by the moderator.
    as_mod = f"target_sqid={owner.sqid}"
    mod_page = await posts_page(client, mod, f"deleted=true&{as_mod}")
    assert mod_page["total_count"] == 3 and mod_page["match_digest"] == page["match_digest"]
    assert {i["restorable"] for i in mod_page["items"]} == {True}

    body = _restore_all(page)
    answer = await _done(client, owner, body)
    assert (answer["affected_count"], answer["changed_count"], answer["left_count"]) == (2, 2, 1)
    assert answer["left"] == [{"reason": "deleted-by-moderator", "count": 1, "post_ids": [ids[2]]}]
    assert await flag(factory, "deleted_by_user", ids) == [False, False, True]
    # Its undo puts back exactly the two it restored.
    undone = await client.post(answer["undo"], headers=owner.auth)
    assert undone.status == 200, await undone.text()
    assert (await undone.json())["affected_count"] == 2

    answer = await _done(client, mod, body, f"?{as_mod}")
    assert (answer["affected_count"], answer["left_count"], answer["left"]) == (3, 0, [])


async def test_restore_all_brings_back_the_owners_copy_beside_a_moderators_delete(
    client: Client, factory: Factory
) -> None:
    """Two deleted posts of one artwork, one of them deleted by a moderator: the owner may
    restore only the other, so it is no twin of anything the owner could restore."""
    owner, (own, modded) = await factory.owner_and_bulk(2)
    mod = await factory.user(roles=["user", "moderator"])
    set_hash = "UPDATE posts SET hash = $1 WHERE id = $2"
    await factory.pool.execute(set_hash, _ART, own)
    await _done(client, owner, {"action": "delete", "post_ids": [own]})
    await factory.pool.execute(set_hash, _ART, modded)  # one live post per artwork
    await _done(
        client, mod, {"action": "delete", "post_ids": [modded]}, f"?target_sqid={owner.sqid}"
    )
    answer = await _done(client, owner, {"action": "restore", "filter": {}, "expect_count": 2})
    assert answer["affected_count"] == 1
    assert answer["left"] == [{"reason": "deleted-by-moderator", "count": 1, "post_ids": [modded]}]
    flags = await factory.post_flags([own, modded])
    assert (flags[own]["deleted_by_user"], flags[modded]["deleted_by_user"]) == (False, True)


async def test_an_approval_with_its_digest_acts_on_that_set_only(
    client: Client, factory: Factory
) -> None:
    owner, ids = await factory.owner_and_bulk(4)
    await factory.pool.execute(
        "UPDATE posts SET hashtags = '{wip}' WHERE id = ANY($1::int[])", ids[:2]
    )
    seen = await posts_page(client, owner, "hashtag=wip")
    assert seen["total_count"] == 2 and seen["match_digest"]
    # Two posts swap in and out of the filter: the same count, another set.
    await factory.pool.execute(
        "UPDATE posts SET hashtags = CASE WHEN id = $1 THEN '{}' ELSE '{wip}' END::varchar[]"
        " WHERE id = ANY($2::int[])",
        ids[1],
        [ids[1], ids[2]],
    )
    now = await posts_page(client, owner, "hashtag=wip")
    assert now["total_count"] == 2 and now["match_digest"] != seen["match_digest"]

    before = await posts_state(factory.pool)
    body = {
        "action": "delete",
        "filter": {"hashtag": ["wip"]},
        "expect_count": 2,
        "expect_digest": seen["match_digest"],
    }
    problem = await assert_problem(await _post(client, owner, body), 409, "set_changed")
    assert problem["count"] == 2 and problem["match_digest"] == now["match_digest"]
    assert await posts_state(factory.pool) == before

    await _done(client, owner, body | {"expect_digest": problem["match_digest"]})
    deleted = await factory.post_flags(ids)
    assert [deleted[i]["deleted_by_user"] for i in ids] == [True, False, True, False]

    # The deleted listing names its set too, and its restore by filter checks it.
    trash = await posts_page(client, owner, "deleted=true&hashtag=wip")
    assert trash["total_count"] == 2
    stale = {
        "action": "restore",
        "filter": {"hashtag": ["wip"]},
        "expect_count": 2,
        "expect_digest": seen["match_digest"],
    }
    await assert_problem(await _post(client, owner, stale), 409)
    restored = await _done(client, owner, stale | {"expect_digest": trash["match_digest"]})
    assert restored["affected_count"] == 2


async def test_a_digest_goes_with_a_filter_only(client: Client, factory: Factory) -> None:
    owner, ids = await factory.owner_and_bulk(1)
    body = {"action": "hide", "post_ids": ids, "expect_digest": "x" * 32}
    problem = await assert_problem(await _post(client, owner, body), 422)
    assert problem["errors"][0]["field"] == "expect_digest"


@pytest.fixture
async def host_client(
    beside_host: tuple[Settings, asyncpg.Pool, str], aiohttp_client: AiohttpClient
) -> tuple[Client, asyncpg.Pool, Settings]:
    settings, pool, _ = beside_host
    return await aiohttp_client(create_app(settings)), pool, settings


async def test_the_restore_rule_on_the_hosts_own_schema(
    host_client: tuple[Client, asyncpg.Pool, Settings],
) -> None:
    """On the host's tables as its migrations make them, the restore that would break
    uq_posts_hash_active is a 409 naming the new post, never a 5xx."""
    client, pool, settings = host_client
    site = HostSite(pool, settings)
    owner = await site.user("painter", ["user"])
    old = await site.post(owner, 1, legacy=False)
    await pool.execute("UPDATE public.posts SET hash = $2 WHERE id = $1", old.id, _ART)
    await _done(client, owner, {"action": "delete", "post_ids": [old.id]})
    new = await site.post(owner, 2, legacy=True)
    await pool.execute("UPDATE public.posts SET hash = $2 WHERE id = $1", new.id, _ART)

    page = await posts_page(client, owner, "deleted=true")
    (item,) = page["items"]
    assert item["held_by"] == {"post_id": new.id, "public_sqid": new.sqid}
    problem = await assert_problem(
        await _post(client, owner, {"action": "restore", "post_ids": [old.id]}), 409
    )
    assert problem["conflicts"] == [
        {
            "post_id": old.id,
            "public_sqid": old.sqid,
            "held_by": {"post_id": new.id, "public_sqid": new.sqid, "live": True},
        }
    ]
    body = {
        "action": "restore",
        "filter": {},
        "expect_count": 1,
        "expect_digest": page["match_digest"],
    }
    assert (await _done(client, owner, body))["left"] == [
        {"reason": "artwork-reuploaded", "count": 1, "post_ids": [old.id]}
    ]
    assert await pool.fetchval("SELECT deleted_by_user FROM public.posts WHERE id = $1", old.id)

"""The host's restore rule and the approvals that name their set, against real PostgreSQL: a
deleted post whose artwork hash a live post holds (the host's `uq_posts_hash_active`) is marked
in the deleted listing and refused whole by every restore, also when the upload races the
restore and on the host's own schema; the deleted listing's count and its restore by filter
agree about a post a moderator deleted; an action by filter with `expect_digest` acts only on
the set the person saw."""

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
from tests.api.test_host_schema import beside_host
from tests.helpers import assert_problem, eventually, posts_page

Client = TestClient[Any, Any]

__all__ = ["beside_host"]  # the host-schema fixture, used below

_ART = "a" * 64  # an artwork's hash (the host's sha256, hex)


async def _post(client: Client, user: UserRow, body: dict[str, Any], query: str = "") -> Any:
    return await client.post(f"/api/pmd/action{query}", json=body, headers=user.auth)


async def _deleted_with_hash(
    factory: Factory, owner: UserRow, hashes: list[str | None], *, ago: timedelta
) -> list[int]:
    ids = await factory.posts_bulk(owner, len(hashes))
    await factory.pool.execute(
        "UPDATE posts p SET hash = h.hash, deleted_by_user = true, deleted_by_user_date = $3"
        " FROM unnest($1::int[], $2::text[]) AS h(id, hash) WHERE p.id = h.id",
        ids, hashes, datetime.now(UTC) - ago,
    )  # fmt: skip
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
    attempts: list[tuple[UserRow, dict[str, Any], str]] = [
        (owner, {"action": "restore", "post_ids": [free, old]}, ""),
        (owner, {"action": "restore", "filter": {}, "expect_count": page["total_count"]}, ""),
        (mod, {"action": "restore", "post_ids": [old]}, as_mod),
        (mod, {"action": "restore", "filter": {}, "expect_count": page["total_count"]}, as_mod),
    ]
    sqid = await factory.pool.fetchval("SELECT public_sqid FROM posts WHERE id = $1", old)
    for caller, body, query in attempts:
        problem = await assert_problem(await _post(client, caller, body, query), 409)
        assert problem["type"].endswith("artwork-reuploaded"), problem
        assert problem["conflicts"] == [{
            "post_id": old, "public_sqid": sqid,
            "held_by": {"post_id": new.id, "public_sqid": new.sqid, "live": True},
        }]  # fmt: skip
        assert await posts_state(factory.pool) == before  # all or nothing

    # The other post alone is restored.
    ok = await _post(client, owner, {"action": "restore", "post_ids": [free]})
    assert ok.status == 200, await ok.text()


async def test_two_deleted_posts_of_one_artwork_are_not_restored_together(
    client: Client, factory: Factory
) -> None:
    owner = await factory.user()
    first, second = await _deleted_with_hash(factory, owner, [_ART, _ART], ago=timedelta(hours=1))
    before = await posts_state(factory.pool)
    problem = await assert_problem(
        await _post(client, owner, {"action": "restore", "post_ids": [first, second]}), 409
    )
    # Each is named with the other: only one of them can be live.
    assert [(c["post_id"], c["held_by"]["post_id"], c["held_by"]["live"])
            for c in problem["conflicts"]] == [(first, second, False), (second, first, False)]  # fmt: skip
    assert await posts_state(factory.pool) == before
    ok = await _post(client, owner, {"action": "restore", "post_ids": [second]})
    assert ok.status == 200, await ok.text()
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
            owner.id, _ART,
        )  # fmt: skip
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
    problem = await assert_problem(await restoring, 409)
    assert problem["conflicts"][0]["post_id"] == old
    assert problem["conflicts"][0]["held_by"]["post_id"] == new_id
    assert await pool.fetchval("SELECT deleted_by_user FROM posts WHERE id = $1", old) is True


async def test_the_deleted_listing_and_its_restore_agree_on_a_moderators_delete(
    client: Client, factory: Factory
) -> None:
    """Select all → Restore in Recently deleted: the count the page approves is the listing's,
    and the answer names the post the owner may not restore instead of a 409 on the count."""
    owner, ids = await factory.owner_and_bulk(3)
    mod = await factory.user(roles=["user", "moderator"])
    ok = await _post(client, owner, {"action": "delete", "post_ids": ids[:2]})
    assert ok.status == 200, await ok.text()
    ok = await _post(client, mod, {"action": "delete", "post_ids": ids[2:]},
                     f"?target_sqid={owner.sqid}")  # fmt: skip
    assert ok.status == 200, await ok.text()

    page = await posts_page(client, owner, "deleted=true")
    assert page["total_count"] == 3
    marks = {i["id"]: (i["restorable"], i["restore_refusal"]) for i in page["items"]}
    assert marks == {ids[0]: (True, None), ids[1]: (True, None),
                     ids[2]: (False, "deleted-by-moderator")}  # fmt: skip
    before = await posts_state(factory.pool)
    body = {"action": "restore", "filter": {}, "expect_count": page["total_count"],
            "expect_digest": page["match_digest"]}  # fmt: skip
    problem = await assert_problem(await _post(client, owner, body), 400)
    assert problem["invalid_post_ids"] == [ids[2]] and "moderator" in problem["detail"]
    assert await posts_state(factory.pool) == before
    # Asked again, the same answer (nothing a retry with another count could mend).
    again = await assert_problem(await _post(client, owner, body), 400)
    assert again["invalid_post_ids"] == [ids[2]]

    # The moderator's listing counts the same three, each restorable by the moderator.
    as_mod = f"target_sqid={owner.sqid}"
    mod_page = await posts_page(client, mod, f"deleted=true&{as_mod}")
    assert mod_page["total_count"] == 3 and mod_page["match_digest"] == page["match_digest"]
    assert {i["restorable"] for i in mod_page["items"]} == {True}
    ok = await _post(client, mod, body, f"?{as_mod}")
    assert ok.status == 200, await ok.text()
    assert (await ok.json())["affected_count"] == 3


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
        ids[1], [ids[1], ids[2]],
    )  # fmt: skip
    now = await posts_page(client, owner, "hashtag=wip")
    assert now["total_count"] == 2 and now["match_digest"] != seen["match_digest"]

    before = await posts_state(factory.pool)
    body = {"action": "delete", "filter": {"hashtag": ["wip"]}, "expect_count": 2,
            "expect_digest": seen["match_digest"]}  # fmt: skip
    problem = await assert_problem(await _post(client, owner, body), 409)
    assert problem["count"] == 2 and problem["match_digest"] == now["match_digest"]
    assert await posts_state(factory.pool) == before

    ok = await _post(client, owner, body | {"expect_digest": problem["match_digest"]})
    assert ok.status == 200, await ok.text()
    deleted = await factory.post_flags(ids)
    assert [deleted[i]["deleted_by_user"] for i in ids] == [True, False, True, False]

    # The deleted listing names its set too, and its restore by filter checks it.
    trash = await posts_page(client, owner, "deleted=true&hashtag=wip")
    assert trash["total_count"] == 2
    stale = {"action": "restore", "filter": {"hashtag": ["wip"]}, "expect_count": 2,
             "expect_digest": seen["match_digest"]}  # fmt: skip
    await assert_problem(await _post(client, owner, stale), 409)
    ok = await _post(client, owner, stale | {"expect_digest": trash["match_digest"]})
    assert ok.status == 200, await ok.text()
    assert (await ok.json())["affected_count"] == 2


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
    ok = await _post(client, owner, {"action": "delete", "post_ids": [old.id]})
    assert ok.status == 200, await ok.text()
    new = await site.post(owner, 2, legacy=True)
    await pool.execute("UPDATE public.posts SET hash = $2 WHERE id = $1", new.id, _ART)

    page = await posts_page(client, owner, "deleted=true")
    (item,) = page["items"]
    assert item["held_by"] == {"post_id": new.id, "public_sqid": new.sqid}
    for body in (
        {"action": "restore", "post_ids": [old.id]},
        {"action": "restore", "filter": {}, "expect_count": 1,
         "expect_digest": page["match_digest"]},
    ):  # fmt: skip
        problem = await assert_problem(await _post(client, owner, body), 409)
        assert problem["conflicts"] == [{
            "post_id": old.id, "public_sqid": old.sqid,
            "held_by": {"post_id": new.id, "public_sqid": new.sqid, "live": True},
        }]  # fmt: skip
    assert await pool.fetchval("SELECT deleted_by_user FROM public.posts WHERE id = $1", old.id)

"""POST /api/pmd/action and /api/pmd/license against real PostgreSQL: effects, all-or-nothing,
moderator attribution, the restore window and licenses. Bad input: test_posts_bad_input.py;
concurrent batches: test_posts_concurrency.py; the NOTIFY: test_posts_notify.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from support.seeding import Factory, posts_state
from tests.helpers import act, assert_problem, flag, ok, succeeded

Client = TestClient[Any, Any]


async def _audit_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT actor_id, action, target_type, target_id, note FROM audit_logs ORDER BY created_at"
    )
    return [dict(r) for r in rows]


# --- effects and idempotency ------------------------------------------------------------


async def test_hide_and_unhide_are_idempotent(client: Client, factory: Factory) -> None:
    user, ids = await factory.owner_and_bulk(5)
    untouched = await factory.posts_bulk(user, 2)

    # affected_count: the posts acted on (the host's page says "hidden N posts" with it);
    # changed_count: the rows that changed.
    succeeded(await ok(client, user, "hide", ids[:3]), "Hidden 3 post(s)", 3, 3)
    flags = await factory.post_flags(ids + untouched)
    assert [flags[i]["hidden_by_user"] for i in ids] == [True, True, True, False, False]
    assert not any(flags[i]["hidden_by_mod"] for i in ids)

    # Again, overlapping: only the two not yet hidden change.
    succeeded(await ok(client, user, "hide", ids), "Hidden 5 post(s) (3 already hidden)", 5, 2)
    body = await ok(client, user, "hide", ids)
    assert (body["affected_count"], body["changed_count"]) == (5, 0)
    assert body["message"] == "Hidden 5 post(s) (5 already hidden)"

    succeeded(await ok(client, user, "unhide", ids[:1]), "Unhidden 1 post(s)", 1, 1)
    body = await ok(client, user, "unhide", ids)
    assert (body["affected_count"], body["changed_count"]) == (5, 4)
    body = await ok(client, user, "unhide", ids)
    assert body["message"] == "Unhidden 5 post(s) (5 already visible)"

    flags = await factory.post_flags(ids + untouched)
    assert not any(f["hidden_by_user"] or f["deleted_by_user"] for f in flags.values())


async def test_delete_then_restore(client: Client, factory: Factory, pool: asyncpg.Pool) -> None:
    user, ids = await factory.owner_and_bulk(4)
    before = datetime.now(UTC)

    succeeded(await ok(client, user, "delete", ids[:3]), "Deleted 3 post(s)", 3, 3)
    flags = await factory.post_flags(ids)
    for i in ids[:3]:
        assert flags[i]["deleted_by_user"] is True
        deleted_at = flags[i]["deleted_by_user_date"]
        assert before - timedelta(seconds=1) <= deleted_at <= datetime.now(UTC)
    assert flags[ids[3]]["deleted_by_user"] is False
    assert flags[ids[3]]["deleted_by_user_date"] is None

    listed = await (await client.get("/api/pmd/posts", headers=user.auth)).json()
    assert [i["id"] for i in listed["items"]] == [ids[3]]
    assert listed["total_count"] == 1

    # Deleting again names the already-deleted ids and changes nothing.
    snapshot = await posts_state(pool)
    resp = await act(client, user, "delete", [ids[3], ids[0]])
    body = await assert_problem(resp, 400)
    assert body["invalid_post_ids"] == [ids[0]]
    assert str(ids[0]) in body["detail"]
    assert "nothing was changed" in body["detail"]
    assert await posts_state(pool) == snapshot

    succeeded(await ok(client, user, "restore", ids[:2]), "Restored 2 post(s)", 2, 2)
    # Restoring again, as hiding again: idempotent, with a live post among them too.
    succeeded(
        await ok(client, user, "restore", [ids[0], ids[1], ids[3]]),
        "Restored 3 post(s) (3 not deleted)",
        3,
        0,
    )
    flags = await factory.post_flags(ids)
    assert [flags[i]["deleted_by_user"] for i in ids] == [False, False, True, False]
    assert flags[ids[0]]["deleted_by_user_date"] is None
    deleted = await (await client.get("/api/pmd/posts?deleted=true", headers=user.auth)).json()
    assert [i["id"] for i in deleted["items"]] == [ids[2]]


async def test_hidden_state_survives_delete_and_restore(client: Client, factory: Factory) -> None:
    user, ids = await factory.owner_and_bulk(2)
    await ok(client, user, "hide", ids[:1])
    await ok(client, user, "delete", ids)
    # A deleted post cannot be hidden or unhidden until restored.
    body = await assert_problem(await act(client, user, "unhide", ids[:1]), 400)
    assert body["invalid_post_ids"] == ids[:1]
    await ok(client, user, "restore", ids)
    assert await flag(factory, "hidden_by_user", ids) == [True, False]


# --- all or nothing ---------------------------------------------------------------------


async def test_129_ids_change_nothing(client: Client, factory: Factory, pool: asyncpg.Pool) -> None:
    user, ids = await factory.owner_and_bulk(129)
    snapshot = await posts_state(pool)
    for action in ("hide", "delete"):
        body = await assert_problem(await act(client, user, action, ids), 422)
        assert "128" in body["detail"]
        assert body["errors"][0]["field"] == "post_ids"
    body = await assert_problem(
        await client.post(
            "/api/pmd/license", json={"post_ids": ids, "license_id": None}, headers=user.auth
        ),
        422,
    )
    assert "128" in body["detail"]
    assert await posts_state(pool) == snapshot
    # Exactly 128 is fine.
    assert (await ok(client, user, "hide", ids[:128]))["affected_count"] == 128


async def test_duplicate_ids_are_422_and_change_nothing(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(3)
    snapshot = await posts_state(pool)
    body = await assert_problem(await act(client, user, "hide", [*ids, ids[1]]), 422)
    assert str(ids[1]) in body["detail"]
    assert "128" in body["detail"]
    assert body["errors"][0]["field"] == "post_ids"
    resp = await client.post(
        "/api/pmd/license",
        json={"post_ids": [ids[0], ids[0]], "license_id": None},
        headers=user.auth,
    )
    await assert_problem(resp, 422)
    assert await posts_state(pool) == snapshot


@pytest.mark.parametrize("action", ["hide", "unhide", "delete"])
async def test_another_users_post_rejects_the_whole_batch(
    client: Client, factory: Factory, pool: asyncpg.Pool, action: str
) -> None:
    user, mine = await factory.owner_and_bulk(5)
    bob = await factory.user()
    bobs = await factory.posts_bulk(bob, 1)
    if action == "unhide":
        await pool.execute("UPDATE posts SET hidden_by_user = true")
    snapshot = await posts_state(pool)
    resp = await act(client, user, action, [mine[0], bobs[0], *mine[1:]])
    body = await assert_problem(resp, 400)
    assert body["invalid_post_ids"] == bobs
    assert body["errors"][0]["field"] == "post_ids"
    assert body["detail"].startswith(f"Post {bobs[0]} is not one of this user's artworks")
    assert "nothing was changed" in body["detail"]
    assert await posts_state(pool) == snapshot


async def test_every_ineligible_id_is_named(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, good = await factory.owner_and_bulk(3)
    bob = await factory.user()
    playlist = await factory.posts_bulk(user, 1, kind="playlist")
    deleted = await factory.posts_bulk(user, 1)
    await pool.execute(
        "UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now() WHERE id = $1",
        deleted[0],
    )
    bobs = await factory.posts_bulk(bob, 1)
    nonexistent = 2_000_000_000
    bad = sorted([*playlist, *deleted, *bobs, nonexistent])
    snapshot = await posts_state(pool)
    body = await assert_problem(await act(client, user, "hide", [*good, *bad]), 400)
    assert body["invalid_post_ids"] == bad
    assert body["detail"].startswith("Posts " + ", ".join(map(str, bad)) + " are not")
    assert await posts_state(pool) == snapshot


async def test_many_ineligible_ids_stay_readable(client: Client, factory: Factory) -> None:
    user = await factory.user()
    body = await assert_problem(await act(client, user, "delete", list(range(1, 129))), 400)
    assert body["invalid_post_ids"] == list(range(1, 129))
    assert "and 108 more" in body["detail"]
    assert len(body["detail"]) < 300


# --- moderators -------------------------------------------------------------------------


async def test_moderator_actions_are_attributed_and_audited(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    mod, bob, ids = await factory.caller_and_posts(4, roles=["user", "moderator"])

    body = await ok(client, mod, "hide", ids[:3], target_sqid=bob.sqid)
    assert body["message"] == "Hidden 3 post(s)"
    flags = await factory.post_flags(ids)
    assert [flags[i]["hidden_by_mod"] for i in ids] == [True, True, True, False]
    assert not any(f["hidden_by_user"] for f in flags.values())

    # Bob unhiding his own posts does not undo a moderator's hide.
    body = await ok(client, bob, "unhide", ids[:3])
    assert body["changed_count"] == 0
    assert all(f["hidden_by_mod"] for f in (await factory.post_flags(ids[:3])).values())

    # target_sqid in the query string works the same; a no-op batch is still audited.
    resp = await client.post(
        f"/api/pmd/action?target_sqid={bob.sqid}",
        json={"action": "hide", "post_ids": ids[:1]},
        headers=mod.auth,
    )
    assert resp.status == 200
    assert (await resp.json())["changed_count"] == 0

    await ok(client, mod, "unhide", ids[:2], target_sqid=bob.sqid)
    await ok(client, mod, "delete", ids[3:], target_sqid=bob.sqid)
    await ok(client, mod, "restore", ids[3:], target_sqid=bob.sqid)
    cc = await factory.license("CC0")
    resp = await client.post(
        "/api/pmd/license",
        json={"post_ids": ids, "license_id": cc, "target_sqid": bob.sqid},
        headers=mod.auth,
    )
    assert resp.status == 200

    audit = await _audit_rows(pool)
    assert [a["action"] for a in audit] == [
        "pmd_batch_hide",
        "pmd_batch_hide",
        "pmd_batch_unhide",
        "pmd_batch_delete",
        "pmd_batch_restore",
        "pmd_batch_license",
    ]
    assert all(a["actor_id"] == mod.id for a in audit)
    assert all((a["target_type"], a["target_id"]) == ("user", str(bob.id)) for a in audit)
    assert json.loads(audit[0]["note"]) == {"post_ids": ids[:3], "changed": 3}
    assert json.loads(audit[1]["note"]) == {"post_ids": ids[:1], "changed": 0}

    flags = await factory.post_flags(ids)
    assert [flags[i]["hidden_by_mod"] for i in ids] == [False, False, True, False]
    assert all(f["license_id"] == cc for f in flags.values())


async def test_rejected_moderator_batch_writes_no_audit_row(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    mod = await factory.user(roles=["moderator"])
    bob, bobs = await factory.owner_and_bulk(2)
    carol = await factory.user()
    carols = await factory.posts_bulk(carol, 1)
    snapshot = await posts_state(pool)
    body = await assert_problem(
        await act(client, mod, "hide", [*bobs, *carols], target_sqid=bob.sqid), 400
    )
    assert body["invalid_post_ids"] == carols
    assert await _audit_rows(pool) == []
    assert await posts_state(pool) == snapshot


async def test_self_actions_write_no_audit_rows(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    mod = await factory.user(roles=["moderator"])
    ids = await factory.posts_bulk(mod, 2)
    await ok(client, mod, "hide", ids)
    # A moderator naming themselves is a self-action too: their own flag, no audit.
    await ok(client, mod, "delete", ids, target_sqid=mod.sqid)
    flags = await factory.post_flags(ids)
    assert all(f["hidden_by_user"] and not f["hidden_by_mod"] for f in flags.values())
    assert all(f["deleted_by_user"] for f in flags.values())
    assert await _audit_rows(pool) == []


async def test_plain_user_cannot_act_on_another_users_posts(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    alice, bob, ids = await factory.caller_and_posts(2)
    snapshot = await posts_state(pool)
    await assert_problem(await act(client, alice, "delete", ids, target_sqid=bob.sqid), 403)
    body = await assert_problem(await act(client, alice, "delete", ids), 400)
    assert body["invalid_post_ids"] == ids
    resp = await client.post(
        f"/api/pmd/action?target_sqid={bob.sqid}",
        json={"action": "delete", "post_ids": ids, "target_sqid": alice.sqid},
        headers=alice.auth,
    )
    await assert_problem(resp, 403)  # the query target is checked first
    assert await posts_state(pool) == snapshot
    assert await _audit_rows(pool) == []


# --- restore window ---------------------------------------------------------------------


async def test_restore_window_edges(client: Client, factory: Factory, pool: asyncpg.Pool) -> None:
    user = await factory.user()
    inside, outside, fresh = await factory.posts_bulk(user, 3)
    await pool.execute(
        """
        UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now() - CASE id
            WHEN $1 THEN interval '6 days 23 hours'
            WHEN $2 THEN interval '7 days 1 hour'
            ELSE interval '1 minute' END
        """,
        inside,
        outside,
    )
    snapshot = await posts_state(pool)

    # One expired id spoils the batch.
    body = await assert_problem(await act(client, user, "restore", [fresh, outside, inside]), 400)
    assert body["invalid_post_ids"] == [outside]
    assert str(outside) in body["detail"]
    assert "7 days" in body["detail"]
    assert await posts_state(pool) == snapshot

    succeeded(await ok(client, user, "restore", [inside]), "Restored 1 post(s)", 1, 1)
    body = await assert_problem(await act(client, user, "restore", [outside]), 400)
    assert body["detail"].startswith(f"Post {outside} is not a deleted artwork")
    flags = await factory.post_flags([inside, outside, fresh])
    assert flags[inside]["deleted_by_user"] is False
    assert flags[outside]["deleted_by_user"] is True
    assert flags[fresh]["deleted_by_user"] is True


# --- license ----------------------------------------------------------------------------


async def test_license_set_clear_and_unknown(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, _, bobs = await factory.caller_and_posts(1)
    ids = await factory.posts_bulk(user, 3)
    cc = await factory.license("CC-BY-SA-4.0")

    async def license(post_ids: list[int], license_id: int | None) -> Any:
        return await client.post(
            "/api/pmd/license",
            json={"post_ids": post_ids, "license_id": license_id},
            headers=user.auth,
        )

    resp = await license(ids[:2], cc)
    assert resp.status == 200
    # The host's page reads the identifier back out of the message (`/Changed license to (\S+)/`).
    body = await resp.json()
    assert body.pop("undo").endswith("/undo")
    succeeded(body, "Changed license to CC-BY-SA-4.0 for 2 post(s)", 2, 2)
    body = await (await license(ids, cc)).json()
    assert body["message"] == "Changed license to CC-BY-SA-4.0 for 3 post(s)"
    assert (body["affected_count"], body["changed_count"]) == (3, 1)
    listed = await (await client.get("/api/pmd/posts", headers=user.auth)).json()
    assert {i["license_identifier"] for i in listed["items"]} == {"CC-BY-SA-4.0"}

    snapshot = await posts_state(pool)
    body = await assert_problem(await license(ids, cc + 1000), 400)
    assert body["errors"][0]["field"] == "license_id"
    assert str(cc + 1000) in body["detail"]
    body = await assert_problem(await license([*ids, *bobs], None), 400)
    assert body["invalid_post_ids"] == bobs
    assert await posts_state(pool) == snapshot

    resp = await license(ids[:1], None)
    assert (await resp.json())["message"] == "Removed license from 1 post(s)"
    body = await (await license(ids, None)).json()
    assert body["message"] == "Removed license from 3 post(s)"
    assert (body["affected_count"], body["changed_count"]) == (3, 2)
    flags = await factory.post_flags(ids)
    assert all(f["license_id"] is None for f in flags.values())


async def test_license_id_is_required_and_typed(client: Client, factory: Factory) -> None:
    user, ids = await factory.owner_and_bulk(1)
    cases: list[tuple[Any, str]] = [
        ({"post_ids": ids}, "license_id"),
        ({"post_ids": ids, "license_id": "CC0"}, "license_id"),
        ({"post_ids": ids, "license_id": 0}, "license_id"),
        ({"post_ids": ids, "license_id": 2**31}, "license_id"),
        ({"license_id": None}, "post_ids"),
        ({"post_ids": ids, "license_id": None, "action": "hide"}, "action"),
    ]
    for payload, field in cases:
        resp = await client.post("/api/pmd/license", json=payload, headers=user.auth)
        body = await assert_problem(resp, 422)
        assert body["errors"][0]["field"] == field, (payload, body)
        assert f"`{field}`" in body["detail"]

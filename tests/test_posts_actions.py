"""POST /api/pmd/action and /api/pmd/license against real PostgreSQL: effects, all-or-nothing,
moderator attribution, the restore window, concurrency, and the pmd_posts_changed NOTIFY."""

from __future__ import annotations

import asyncio
import io
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.core.settings import Settings
from support.seeding import Factory
from tests.helpers import act, assert_problem, eventually, ok

Client = TestClient[Any, Any]


async def _snapshot(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT id, hidden_by_user, hidden_by_mod, deleted_by_user, deleted_by_user_date,"
        " license_id FROM posts ORDER BY id"
    )
    return [dict(r) for r in rows]


async def _audit_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT actor_id, action, target_type, target_id, note FROM audit_logs ORDER BY created_at"
    )
    return [dict(r) for r in rows]


# --- effects and idempotency ------------------------------------------------------------


async def test_hide_and_unhide_are_idempotent(client: Client, factory: Factory) -> None:
    user = await factory.user()
    ids = await factory.posts_bulk(user, 5)
    untouched = await factory.posts_bulk(user, 2)

    # affected_count: the posts acted on (the host's page says "hidden N posts" with it);
    # changed_count: the rows that changed.
    body = await ok(client, user, "hide", ids[:3])
    assert body == {
        "success": True, "affected_count": 3, "message": "Hidden 3 post(s)", "changed_count": 3
    }  # fmt: skip
    flags = await factory.post_flags(ids + untouched)
    assert [flags[i]["hidden_by_user"] for i in ids] == [True, True, True, False, False]
    assert not any(flags[i]["hidden_by_mod"] for i in ids)

    # Again, overlapping: only the two not yet hidden change.
    body = await ok(client, user, "hide", ids)
    assert body == {
        "success": True,
        "affected_count": 5,
        "message": "Hidden 5 post(s) (3 already hidden)",
        "changed_count": 2,
    }
    body = await ok(client, user, "hide", ids)
    assert (body["affected_count"], body["changed_count"]) == (5, 0)
    assert body["message"] == "Hidden 5 post(s) (5 already hidden)"

    body = await ok(client, user, "unhide", ids[:1])
    assert body == {
        "success": True, "affected_count": 1, "message": "Unhidden 1 post(s)", "changed_count": 1
    }  # fmt: skip
    body = await ok(client, user, "unhide", ids)
    assert (body["affected_count"], body["changed_count"]) == (5, 4)
    body = await ok(client, user, "unhide", ids)
    assert body["message"] == "Unhidden 5 post(s) (5 already visible)"

    flags = await factory.post_flags(ids + untouched)
    assert not any(f["hidden_by_user"] or f["deleted_by_user"] for f in flags.values())


async def test_delete_then_restore(client: Client, factory: Factory, pool: asyncpg.Pool) -> None:
    user = await factory.user()
    ids = await factory.posts_bulk(user, 4)
    before = datetime.now(UTC)

    body = await ok(client, user, "delete", ids[:3])
    assert body == {
        "success": True, "affected_count": 3, "message": "Deleted 3 post(s)", "changed_count": 3
    }  # fmt: skip
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
    snapshot = await _snapshot(pool)
    resp = await act(client, user, "delete", [ids[3], ids[0]])
    body = await assert_problem(resp, 400)
    assert body["invalid_post_ids"] == [ids[0]]
    assert str(ids[0]) in body["detail"]
    assert "nothing was changed" in body["detail"]
    assert await _snapshot(pool) == snapshot

    body = await ok(client, user, "restore", ids[:2])
    assert body == {
        "success": True, "affected_count": 2, "message": "Restored 2 post(s)", "changed_count": 2
    }  # fmt: skip
    # Restoring again, as hiding again: idempotent, with a live post among them too.
    body = await ok(client, user, "restore", [ids[0], ids[1], ids[3]])
    assert body == {
        "success": True, "affected_count": 3, "changed_count": 0,
        "message": "Restored 3 post(s) (3 not deleted)",
    }  # fmt: skip
    flags = await factory.post_flags(ids)
    assert [flags[i]["deleted_by_user"] for i in ids] == [False, False, True, False]
    assert flags[ids[0]]["deleted_by_user_date"] is None
    deleted = await (await client.get("/api/pmd/posts?deleted=true", headers=user.auth)).json()
    assert [i["id"] for i in deleted["items"]] == [ids[2]]


async def test_hidden_state_survives_delete_and_restore(client: Client, factory: Factory) -> None:
    user = await factory.user()
    ids = await factory.posts_bulk(user, 2)
    await ok(client, user, "hide", ids[:1])
    await ok(client, user, "delete", ids)
    # A deleted post cannot be hidden or unhidden until restored.
    body = await assert_problem(await act(client, user, "unhide", ids[:1]), 400)
    assert body["invalid_post_ids"] == ids[:1]
    await ok(client, user, "restore", ids)
    flags = await factory.post_flags(ids)
    assert [flags[i]["hidden_by_user"] for i in ids] == [True, False]


# --- all or nothing ---------------------------------------------------------------------


async def test_129_ids_change_nothing(client: Client, factory: Factory, pool: asyncpg.Pool) -> None:
    user = await factory.user()
    ids = await factory.posts_bulk(user, 129)
    snapshot = await _snapshot(pool)
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
    assert await _snapshot(pool) == snapshot
    # Exactly 128 is fine.
    assert (await ok(client, user, "hide", ids[:128]))["affected_count"] == 128


async def test_duplicate_ids_are_422_and_change_nothing(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    ids = await factory.posts_bulk(user, 3)
    snapshot = await _snapshot(pool)
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
    assert await _snapshot(pool) == snapshot


@pytest.mark.parametrize("action", ["hide", "unhide", "delete"])
async def test_another_users_post_rejects_the_whole_batch(
    client: Client, factory: Factory, pool: asyncpg.Pool, action: str
) -> None:
    user = await factory.user()
    bob = await factory.user()
    mine = await factory.posts_bulk(user, 5)
    bobs = await factory.posts_bulk(bob, 1)
    if action == "unhide":
        await pool.execute("UPDATE posts SET hidden_by_user = true")
    snapshot = await _snapshot(pool)
    resp = await act(client, user, action, [mine[0], bobs[0], *mine[1:]])
    body = await assert_problem(resp, 400)
    assert body["invalid_post_ids"] == bobs
    assert body["errors"][0]["field"] == "post_ids"
    assert body["detail"].startswith(f"Post {bobs[0]} is not one of this user's artworks")
    assert "nothing was changed" in body["detail"]
    assert await _snapshot(pool) == snapshot


async def test_every_ineligible_id_is_named(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    bob = await factory.user()
    good = await factory.posts_bulk(user, 3)
    playlist = await factory.posts_bulk(user, 1, kind="playlist")
    deleted = await factory.posts_bulk(user, 1)
    await pool.execute(
        "UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now() WHERE id = $1",
        deleted[0],
    )
    bobs = await factory.posts_bulk(bob, 1)
    nonexistent = 2_000_000_000
    bad = sorted([*playlist, *deleted, *bobs, nonexistent])
    snapshot = await _snapshot(pool)
    body = await assert_problem(await act(client, user, "hide", [*good, *bad]), 400)
    assert body["invalid_post_ids"] == bad
    assert body["detail"].startswith("Posts " + ", ".join(map(str, bad)) + " are not")
    assert await _snapshot(pool) == snapshot


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
    mod = await factory.user(roles=["user", "moderator"])
    bob = await factory.user()
    ids = await factory.posts_bulk(bob, 4)

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
    bob = await factory.user()
    carol = await factory.user()
    bobs = await factory.posts_bulk(bob, 2)
    carols = await factory.posts_bulk(carol, 1)
    snapshot = await _snapshot(pool)
    body = await assert_problem(
        await act(client, mod, "hide", [*bobs, *carols], target_sqid=bob.sqid), 400
    )
    assert body["invalid_post_ids"] == carols
    assert await _audit_rows(pool) == []
    assert await _snapshot(pool) == snapshot


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
    alice = await factory.user()
    bob = await factory.user()
    ids = await factory.posts_bulk(bob, 2)
    snapshot = await _snapshot(pool)
    await assert_problem(await act(client, alice, "delete", ids, target_sqid=bob.sqid), 403)
    body = await assert_problem(await act(client, alice, "delete", ids), 400)
    assert body["invalid_post_ids"] == ids
    resp = await client.post(
        f"/api/pmd/action?target_sqid={bob.sqid}",
        json={"action": "delete", "post_ids": ids, "target_sqid": alice.sqid},
        headers=alice.auth,
    )
    await assert_problem(resp, 403)  # the query target is checked first
    assert await _snapshot(pool) == snapshot
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
    snapshot = await _snapshot(pool)

    # One expired id spoils the batch.
    body = await assert_problem(await act(client, user, "restore", [fresh, outside, inside]), 400)
    assert body["invalid_post_ids"] == [outside]
    assert str(outside) in body["detail"]
    assert "7 days" in body["detail"]
    assert await _snapshot(pool) == snapshot

    body = await ok(client, user, "restore", [inside])
    assert body == {
        "success": True, "affected_count": 1, "message": "Restored 1 post(s)", "changed_count": 1
    }  # fmt: skip
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
    user = await factory.user()
    bob = await factory.user()
    ids = await factory.posts_bulk(user, 3)
    bobs = await factory.posts_bulk(bob, 1)
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
    assert await resp.json() == {
        "success": True,
        "affected_count": 2,
        "message": "Changed license to CC-BY-SA-4.0 for 2 post(s)",
        "changed_count": 2,
    }
    body = await (await license(ids, cc)).json()
    assert body["message"] == "Changed license to CC-BY-SA-4.0 for 3 post(s)"
    assert (body["affected_count"], body["changed_count"]) == (3, 1)
    listed = await (await client.get("/api/pmd/posts", headers=user.auth)).json()
    assert {i["license_identifier"] for i in listed["items"]} == {"CC-BY-SA-4.0"}

    snapshot = await _snapshot(pool)
    body = await assert_problem(await license(ids, cc + 1000), 400)
    assert body["errors"][0]["field"] == "license_id"
    assert str(cc + 1000) in body["detail"]
    body = await assert_problem(await license([*ids, *bobs], None), 400)
    assert body["invalid_post_ids"] == bobs
    assert await _snapshot(pool) == snapshot

    resp = await license(ids[:1], None)
    assert (await resp.json())["message"] == "Removed license from 1 post(s)"
    body = await (await license(ids, None)).json()
    assert body["message"] == "Removed license from 3 post(s)"
    assert (body["affected_count"], body["changed_count"]) == (3, 2)
    flags = await factory.post_flags(ids)
    assert all(f["license_id"] is None for f in flags.values())


async def test_license_id_is_required_and_typed(client: Client, factory: Factory) -> None:
    user = await factory.user()
    ids = await factory.posts_bulk(user, 1)
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


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"post_ids": [1]}, "action"),
        ({"action": "hide"}, "post_ids"),
        ({"action": "archive", "post_ids": [1]}, "action"),
        ({"action": "HIDE", "post_ids": [1]}, "action"),
        ({"action": 1, "post_ids": [1]}, "action"),
        ({"action": "hide", "post_ids": 1}, "post_ids"),
        ({"action": "hide", "post_ids": "1,2"}, "post_ids"),
        ({"action": "hide", "post_ids": [1.5]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [True]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [None]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [0]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [1, -5]}, "post_ids[1]"),
        ({"action": "hide", "post_ids": [2**31]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": [10**30]}, "post_ids[0]"),
        ({"action": "hide", "post_ids": []}, "post_ids"),
        ({"action": "hide", "post_ids": [1], "target_sqid": 5}, "target_sqid"),
        ({"action": "hide", "post_ids": [1], "target_sqid": "x" * 17}, "target_sqid"),
        ("hide", "body"),
        ([{"action": "hide", "post_ids": [1]}], "body"),
    ],
)
async def test_schema_violations_are_422_saying_what_to_fix(
    client: Client, factory: Factory, pool: asyncpg.Pool, payload: Any, field: str
) -> None:
    user = await factory.user()
    await factory.posts_bulk(user, 1)
    snapshot = await _snapshot(pool)
    resp = await client.post("/api/pmd/action", json=payload, headers=user.auth)
    body = await assert_problem(resp, 422)
    assert body["errors"][0]["field"] == field
    assert field.split("[")[0] in body["detail"]
    assert await _snapshot(pool) == snapshot


_VALID_BODIES = {
    "/api/pmd/action": b'{"action": "hide", "post_ids": [1]}',
    "/api/pmd/license": b'{"post_ids": [1], "license_id": null}',
}


@pytest.mark.parametrize("path", sorted(_VALID_BODIES))
@pytest.mark.parametrize(
    "mangle",
    [
        lambda body: b"not json",
        lambda body: body[:-1],  # truncated
        lambda body: body + b"garbage",
        lambda body: b"\x00\x01\x02",
        lambda body: body.replace(b"[1]", b"[1,]"),
        lambda body: b"   ",
    ],
    ids=["text", "truncated", "trailing", "binary", "trailing-comma", "blank"],
)
async def test_non_json_bodies_are_400(
    client: Client, factory: Factory, path: str, mangle: Any
) -> None:
    user = await factory.user()
    resp = await client.post(
        path,
        data=mangle(_VALID_BODIES[path]),
        headers={**user.auth, "Content-Type": "application/json"},
    )
    body = await assert_problem(resp, 400)
    assert "JSON" in body["detail"]


async def test_json_null_body_is_422(client: Client, factory: Factory) -> None:
    user = await factory.user()
    resp = await client.post(
        "/api/pmd/action",
        data=b"null",
        headers={**user.auth, "Content-Type": "application/json"},
    )
    body = await assert_problem(resp, 422)
    assert "object" in body["detail"]


async def test_ten_megabyte_body_is_413(client: Client, factory: Factory) -> None:
    user = await factory.user()
    ids = await factory.posts_bulk(user, 1)
    padding = "x" * (10 * 1024 * 1024)
    for path in ("/api/pmd/action", "/api/pmd/license"):
        resp = await client.post(
            path,
            # File-like (Content-Length from its size): aiohttp warns about large raw bodies.
            data=io.BytesIO(
                json.dumps({"action": "hide", "post_ids": ids, "pad": padding}).encode()
            ),
            headers={**user.auth, "Content-Type": "application/json"},
        )
        body = await assert_problem(resp, 413)
        assert "limit" in body["detail"]
    assert (await factory.post_flags(ids))[ids[0]]["hidden_by_user"] is False


async def test_wrong_content_type_is_415(client: Client, factory: Factory) -> None:
    user = await factory.user()
    resp = await client.post(
        "/api/pmd/license",
        data='{"post_ids": [1], "license_id": null}',
        headers={**user.auth, "Content-Type": "text/plain"},
    )
    body = await assert_problem(resp, 415)
    assert "application/json" in body["detail"]


async def test_unauthenticated_action_changes_nothing(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    ids = await factory.posts_bulk(user, 1)
    resp = await client.post("/api/pmd/action", json={"action": "delete", "post_ids": ids})
    await assert_problem(resp, 401)
    assert (await factory.post_flags(ids))[ids[0]]["deleted_by_user"] is False


# --- concurrency ------------------------------------------------------------------------

SQL_BATCHES_WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%WITH eligible%'
"""


async def batches_waiting(pool: asyncpg.Pool, n: int) -> None:
    """Until `n` batch statements wait on a row lock together (bounded: a guard against a hang)."""

    async def waiting() -> bool:
        count: int = await pool.fetchval(SQL_BATCHES_WAITING)
        return count >= n

    await eventually(waiting, 30, lambda: f"fewer than {n} batches waiting on the lock")


async def test_concurrent_overlapping_batches_stay_consistent(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """Ten overlapping batches, all in flight at once: the test holds every post's row lock
    until each batch waits on it, so they really run together, whatever the scheduler does."""
    user = await factory.user()
    rng = random.Random(20240501)
    for _round in range(4):
        await pool.execute("TRUNCATE posts CASCADE")
        ids = await factory.posts_bulk(user, 120)
        batches: list[tuple[str, list[int]]] = []
        for _ in range(10):
            action = rng.choice(["hide", "hide", "delete"])
            batch = rng.sample(ids, rng.randint(10, 60))
            batches.append((action, batch))

        async def run(action: str, batch: list[int]) -> tuple[int, dict[str, Any]]:
            resp = await act(client, user, action, batch)
            return resp.status, await resp.json()

        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("SELECT 1 FROM posts WHERE id = ANY($1::int[]) FOR UPDATE", ids)
            running = asyncio.gather(*(run(a, b) for a, b in batches))
            await batches_waiting(pool, len(batches))
        results = await asyncio.wait_for(running, timeout=30)
        flags = await factory.post_flags(ids)
        hidden = {i for i, f in flags.items() if f["hidden_by_user"]}
        deleted = {i for i, f in flags.items() if f["deleted_by_user"]}
        hide_total = delete_total = 0
        for (action, batch), (status, body) in zip(batches, results, strict=True):
            # No deadlock or serialization error ever surfaces as a 5xx.
            assert status in (200, 400), body
            if status == 400:
                # The only way one of the user's own artworks becomes ineligible here is a
                # concurrent delete; every id named must really be deleted, and only those.
                named = set(body["invalid_post_ids"])
                assert named and named <= deleted and named <= set(batch)
                continue
            assert body["affected_count"] == len(batch)
            if action == "hide":
                hide_total += body["changed_count"]
                assert set(batch) <= hidden
            else:
                delete_total += body["changed_count"]
                assert body["affected_count"] == len(batch)
                assert set(batch) <= deleted
        # Every post was hidden at most once and deleted at most once, by a batch that said so.
        assert hide_total == len(hidden)
        assert delete_total == len(deleted)
        assert all(flags[i]["deleted_by_user_date"] is not None for i in deleted)


async def test_a_batch_that_loses_to_a_concurrent_delete_names_the_deleted_posts(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """A hide waits for a delete of some of its posts that is under way; once the delete
    commits, the hide is refused naming exactly those posts, and changes nothing."""
    user = await factory.user()
    ids = await factory.posts_bulk(user, 20)
    doomed = ids[5:8]
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(
            "UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now()"
            " WHERE id = ANY($1::int[])",
            doomed,
        )
        hide = asyncio.ensure_future(act(client, user, "hide", ids))
        await batches_waiting(pool, 1)
    resp = await asyncio.wait_for(hide, timeout=30)
    body = await assert_problem(resp, 400)
    assert body["invalid_post_ids"] == doomed
    flags = await factory.post_flags(ids)
    assert not any(f["hidden_by_user"] for f in flags.values())


# --- NOTIFY pmd_posts_changed -------------------------------------------------------------


@pytest.fixture
async def notifications(settings: Settings) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    assert settings.database_url is not None
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    conn = await asyncpg.connect(settings.direct_url)

    def on_notify(_c: object, _pid: int, channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        queue.put_nowait({"channel": channel, **json.loads(payload)})

    await conn.add_listener("pmd_posts_changed", on_notify)
    try:
        yield queue
    finally:
        await conn.remove_listener("pmd_posts_changed", on_notify)
        await conn.close()


async def _no_notification(pool: asyncpg.Pool, queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Nothing was announced by what committed so far. PostgreSQL delivers the notifications of
    different transactions in the order they committed, so a marker sent now arrives after any
    NOTIFY of the batches before it: the first notification must be the marker."""
    marker = {"marker": str(uuid.uuid4())}
    await pool.execute("SELECT pg_notify('pmd_posts_changed', $1)", json.dumps(marker))
    note = await asyncio.wait_for(queue.get(), timeout=5)
    assert note == {"channel": "pmd_posts_changed", **marker}, f"unexpected notification {note}"


async def test_notify_after_commit_and_not_for_rejected_batches(
    client: Client,
    factory: Factory,
    pool: asyncpg.Pool,
    notifications: asyncio.Queue[dict[str, Any]],
) -> None:
    user = await factory.user()
    bob = await factory.user()
    ids = await factory.posts_bulk(user, 3)
    bobs = await factory.posts_bulk(bob, 1)

    await ok(client, user, "hide", ids[:2])
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert note == {
        "channel": "pmd_posts_changed",
        "user_id": user.id,
        "action": "hide",
        "post_ids": ids[:2],
    }
    # Delivered after commit: another connection already sees the change.
    flags = await factory.post_flags(ids[:2])
    assert all(f["hidden_by_user"] for f in flags.values())

    # Only the ids that changed are announced.
    await ok(client, user, "hide", ids)
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert note["post_ids"] == ids[2:]

    # Rejected batches and batches that change nothing stay silent.
    await assert_problem(await act(client, user, "delete", [*ids, *bobs]), 400)
    await assert_problem(await act(client, user, "delete", [*ids, ids[0]]), 422)
    await ok(client, user, "hide", ids)
    await _no_notification(factory.pool, notifications)

    await ok(client, user, "delete", ids)
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert (note["action"], note["post_ids"]) == ("delete", ids)
    await ok(client, user, "restore", ids[:1])
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert (note["action"], note["post_ids"]) == ("restore", ids[:1])


async def test_notify_for_moderator_and_license_changes(
    client: Client,
    factory: Factory,
    notifications: asyncio.Queue[dict[str, Any]],
) -> None:
    mod = await factory.user(roles=["moderator"])
    bob = await factory.user()
    ids = await factory.posts_bulk(bob, 2)
    await ok(client, mod, "hide", ids, target_sqid=bob.sqid)
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    # The user whose posts changed, so the host site invalidates the right feeds.
    assert (note["user_id"], note["action"], note["post_ids"]) == (bob.id, "hide", ids)

    cc = await factory.license("CC0")
    resp = await client.post(
        "/api/pmd/license", json={"post_ids": ids, "license_id": cc}, headers=bob.auth
    )
    assert resp.status == 200
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert (note["user_id"], note["action"], note["post_ids"]) == (bob.id, "license", ids)

    resp = await client.post(
        "/api/pmd/license", json={"post_ids": ids, "license_id": 999}, headers=bob.auth
    )
    await assert_problem(resp, 400)
    await _no_notification(factory.pool, notifications)

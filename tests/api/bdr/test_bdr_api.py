"""BDR endpoints: eligibility, the daily limit under concurrency, cancel/remove, 404/409/410."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from pmd_service.core.limits import seconds_to_next_utc_day
from pmd_service.core.settings import Settings
from support.seeding import Factory
from tests.helpers import (
    assert_problem,
    built,
    fetch_item,
    request_bdr,
    requested,
    run_worker,
    zip_path,
)

Client = TestClient[Any, Any]


async def test_eligibility_checked_before_anything_is_written(
    client: Client, factory: Factory
) -> None:
    owner = await factory.user()
    other = await factory.user()
    mine = await factory.post(owner)
    theirs = await factory.post(other)
    deleted = await factory.post(owner, deleted_by_user=True)
    playlist = await factory.post(owner, kind="playlist")
    resp = await client.post(
        "/api/pmd/bdr",
        json={"post_ids": [mine.id, theirs.id, deleted.id, playlist.id, 999999]},
        headers=owner.auth,
    )
    body = await assert_problem(resp, 400)
    assert body["invalid_post_ids"] == sorted([theirs.id, deleted.id, playlist.id, 999999])
    assert str(theirs.id) in body["detail"]
    assert await factory.pool.fetchval("SELECT count(*) FROM batch_download_requests") == 0

    for payload, field in [
        ({"post_ids": list(range(1, 130))}, "post_ids"),
        ({"post_ids": [mine.id, mine.id]}, "post_ids"),
        ({"post_ids": []}, "post_ids"),
        ({"post_ids": [mine.id], "send_email": "yes"}, "send_email"),
        ({"post_ids": [mine.id], "include_everything": True}, "include_everything"),
    ]:
        resp = await client.post("/api/pmd/bdr", json=payload, headers=owner.auth)
        body = await assert_problem(resp, 422)
        assert body["errors"][0]["field"] == field
    assert await factory.pool.fetchval("SELECT count(*) FROM batch_download_requests") == 0


async def test_daily_limit_is_race_free(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner = await factory.user()
    post = await factory.post(owner)

    async def one() -> Any:
        return await client.post("/api/pmd/bdr", json={"post_ids": [post.id]}, headers=owner.auth)

    sent = datetime.now(UTC)
    responses = await asyncio.gather(*(one() for _ in range(50)))
    answered = datetime.now(UTC)
    statuses = sorted(r.status for r in responses)
    assert statuses.count(202) == settings.bdr_daily_limit == 8
    assert statuses.count(429) == 42
    limited = next(r for r in responses if r.status == 429)
    body = await assert_problem(limited, 429)
    assert "8" in body["detail"] and "midnight UTC" in body["detail"]
    retry_after = int(limited.headers["Retry-After"])
    assert 0 < retry_after <= 86400
    # It counts to a UTC midnight from some instant between sending and the answer (rounded
    # up to a whole second): bracketed by the clock, not compared to it, so it holds across
    # midnight too.
    assert utc_midnight_between(
        sent + timedelta(seconds=retry_after - 1), answered + timedelta(seconds=retry_after)
    ), (sent, answered, retry_after)
    assert await factory.pool.fetchval("SELECT count(*) FROM batch_download_requests") == 8


async def test_yesterdays_requests_do_not_count(client: Client, factory: Factory) -> None:
    owner = await factory.user()
    post = await factory.post(owner)
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        seconds=1
    )
    for _ in range(8):
        await factory.pool.execute(
            "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count, created_at, status)"
            " VALUES ($1, $2, 1, $3, 'expired')",
            owner.id,
            [post.id],
            yesterday,
        )
    await request_bdr(client, owner, [post.id])


async def test_a_moderators_requests_spend_the_moderators_limit_not_the_users(
    client: Client, factory: Factory, settings: Settings
) -> None:
    user, [post] = await factory.owner_and_posts(1)
    mod = await factory.user(roles=["moderator"])
    as_mod = {"target_sqid": user.sqid}
    made = []
    for _ in range(settings.bdr_daily_limit):
        made.append(await request_bdr(client, mod, [post.id], **as_mod))
    resp = await client.post(
        "/api/pmd/bdr", json={"post_ids": [post.id], **as_mod}, headers=mod.auth
    )
    await assert_problem(resp, 429)
    # The user's own limit is untouched: all eight of theirs are still available.
    for _ in range(settings.bdr_daily_limit):
        await request_bdr(client, user, [post.id])
    resp = await client.post("/api/pmd/bdr", json={"post_ids": [post.id]}, headers=user.auth)
    await assert_problem(resp, 429)

    # The user sees who asked, and cannot cancel or delete the moderator's requests.
    resp = await client.get("/api/pmd/bdr", headers=user.auth)
    flags = {i["id"]: i["requested_by_moderator"] for i in (await resp.json())["items"]}
    assert len(flags) == 16 and sum(flags.values()) == 8
    assert all(flags[m["id"]] for m in made)
    problem = await assert_problem(
        await client.delete(f"/api/pmd/bdr/{made[0]['id']}", headers=user.auth), 403
    )
    assert "moderator" in problem["detail"]
    assert (await fetch_item(client, user, made[0]["id"]))["status"] == "pending"
    # A moderator on the user's page may.
    resp = await client.delete(
        f"/api/pmd/bdr/{made[0]['id']}?target_sqid={user.sqid}", headers=mod.auth
    )
    assert resp.status == 204
    assert (await fetch_item(client, user, made[0]["id"]))["status"] == "cancelled"


def utc_midnight_between(earliest: datetime, latest: datetime) -> bool:
    midnight = earliest.replace(hour=0, minute=0, second=0, microsecond=0)
    if midnight < earliest:
        midnight += timedelta(days=1)
    return midnight <= latest


def test_retry_after_counts_to_utc_midnight() -> None:
    assert seconds_to_next_utc_day(datetime(2026, 1, 1, 23, 59, 30, tzinfo=UTC)) == 30
    assert seconds_to_next_utc_day(datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)) == 86400


async def test_list_get_and_ownership(client: Client, factory: Factory) -> None:
    owner = await factory.user()
    other = await factory.user()
    post = await factory.post(owner)
    ids = [(await request_bdr(client, owner, [post.id]))["id"] for _ in range(3)]
    resp = await client.get("/api/pmd/bdr", headers=owner.auth)
    assert resp.status == 200
    assert [i["id"] for i in (await resp.json())["items"]] == list(reversed(ids))
    resp = await client.get("/api/pmd/bdr", headers=other.auth)
    assert (await resp.json())["items"] == []

    await assert_problem(await client.get(f"/api/pmd/bdr/{ids[0]}", headers=other.auth), 404)
    await assert_problem(
        await client.get(f"/api/pmd/bdr/{ids[0]}/download", headers=other.auth), 404
    )
    await assert_problem(await client.delete(f"/api/pmd/bdr/{ids[0]}", headers=other.auth), 404)
    body = await assert_problem(
        await client.get("/api/pmd/bdr/not-a-uuid", headers=owner.auth), 400
    )
    assert "UUID" in body["detail"]
    await assert_problem(await client.get(f"/api/pmd/bdr/{uuid.uuid4()}", headers=owner.auth), 404)


async def test_newest_twenty(client: Client, factory: Factory) -> None:
    owner = await factory.user()
    post = await factory.post(owner)
    await factory.pool.execute(
        "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count, created_at, status)"
        " SELECT $1, ARRAY[$2::int], 1, now() - g * interval '1 day', 'expired'"
        " FROM generate_series(1, 25) g",
        owner.id,
        post.id,
    )
    items = (await (await client.get("/api/pmd/bdr", headers=owner.auth)).json())["items"]
    assert len(items) == 20
    assert items == sorted(items, key=lambda i: i["created_at"], reverse=True)


async def test_download_not_ready_is_the_hosts_400(client: Client, factory: Factory) -> None:
    owner, _, [item] = await requested(client, factory)
    resp = await client.get(f"/api/pmd/bdr/{item['id']}/download", headers=owner.auth)
    body = await assert_problem(resp, 400, "bdr_not_ready")
    assert body["details"]["status"] == "pending"


async def test_cancel_pending_then_worker_does_nothing(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, _, [item] = await requested(client, factory)
    resp = await client.delete(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)
    assert resp.status == 204
    await run_worker(settings)
    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "cancelled" and item["removed_at"] is None
    assert item["completed_at"] is not None
    assert not zip_path(settings, owner, item["id"]).exists()
    # Deleting again is harmless.
    assert (await client.delete(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)).status == 204


async def test_delete_ready_removes_zip_and_expires(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, _, [item] = await built(client, factory, settings)
    zip_file = zip_path(settings, owner, item["id"])
    assert zip_file.exists()
    assert (await client.delete(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)).status == 204
    assert not zip_file.exists()
    removed = await fetch_item(client, owner, item["id"])
    # The status set stays the contract's; `removed_at` says it was removed, not expired.
    assert removed["status"] == "expired" and removed["removed_at"] is not None
    completed, removed_at, expires = (
        datetime.fromisoformat(removed[k]) for k in ("completed_at", "removed_at", "expires_at")
    )
    assert completed <= removed_at < expires
    resp = await client.get(f"/api/pmd/bdr/{item['id']}/download", headers=owner.auth)
    await assert_problem(resp, 410)
    # Deleting again changes nothing: it keeps the time it was removed.
    assert (await client.delete(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)).status == 204
    assert await fetch_item(client, owner, item["id"]) == removed


async def test_expired_by_date_and_missing_file_are_410(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, _, [a, b] = await built(client, factory, settings, 2)
    await factory.pool.execute(
        "UPDATE batch_download_requests SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
        a["id"],
    )
    await assert_problem(
        await client.get(f"/api/pmd/bdr/{a['id']}/download", headers=owner.auth), 410
    )

    zip_path(settings, owner, b["id"]).unlink()
    body = await assert_problem(
        await client.get(f"/api/pmd/bdr/{b['id']}/download", headers=owner.auth), 410
    )
    assert "no longer available" in body["detail"]
    lost = await fetch_item(client, owner, b["id"])
    assert lost["status"] == "expired" and lost["removed_at"] is None  # lost, not removed


async def test_moderator_requests_for_a_user(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, [post] = await factory.owner_and_posts(1)
    mod = await factory.user(roles=["moderator"])
    resp = await client.post(
        f"/api/pmd/bdr?target_sqid={owner.sqid}", json={"post_ids": [post.id]}, headers=mod.auth
    )
    assert resp.status == 202
    item = await resp.json()
    row = await factory.pool.fetchrow(
        "SELECT user_id, requested_by FROM batch_download_requests WHERE id = $1::uuid", item["id"]
    )
    assert row is not None
    assert (row["user_id"], row["requested_by"]) == (owner.id, mod.id)
    audit = await factory.pool.fetch("SELECT actor_id, action, target_id FROM audit_logs")
    assert [tuple(a) for a in audit] == [(mod.id, "pmd_batch_download", str(owner.id))]
    # The owner sees it in their list; the moderator's own list stays empty.
    owner_list = (await (await client.get("/api/pmd/bdr", headers=owner.auth)).json())["items"]
    assert [i["id"] for i in owner_list] == [item["id"]]
    mod_list = (await (await client.get("/api/pmd/bdr", headers=mod.auth)).json())["items"]
    assert mod_list == []
    # A plain user cannot do the same.
    resp = await client.post(
        f"/api/pmd/bdr?target_sqid={owner.sqid}",
        json={"post_ids": [post.id]},
        headers=(await factory.user()).auth,
    )
    await assert_problem(resp, 403)


async def test_a_repeated_request_names_the_download_that_serves_unless_it_insists(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner = await factory.user()
    a, b = await factory.post(owner), await factory.post(owner)
    first = await request_bdr(client, owner, [a.id, b.id], repeat=False)
    # The same posts in another order, and again once it is ready: that one serves.
    for status in ("pending", "ready"):
        resp = await client.post(
            "/api/pmd/bdr", json={"post_ids": [b.id, a.id], "repeat": False}, headers=owner.auth
        )
        body = await assert_problem(resp, 409)
        assert body["details"]["reason"] == "bdr_repeated"
        assert body["details"] == {
            "reason": "bdr_repeated",
            "bdr_id": first["id"],
            "status": status,
        }
        if status == "pending":
            await run_worker(settings)
    # Other contents, other posts, or insisting: a new download each.
    other = [
        {"post_ids": [a.id, b.id], "include_comments": True, "repeat": False},
        {"post_ids": [a.id], "repeat": False},
        {"post_ids": [a.id, b.id], "repeat": True},
        {"post_ids": [a.id, b.id]},
    ]
    for payload in other:
        resp = await client.post("/api/pmd/bdr", json=payload, headers=owner.auth)
        assert resp.status == 202, await resp.text()
    # Removed, it serves no more: the newest that still serves is named instead.
    resp = await client.delete(f"/api/pmd/bdr/{first['id']}", headers=owner.auth)
    assert resp.status == 204
    resp = await client.post(
        "/api/pmd/bdr", json={"post_ids": [a.id, b.id], "repeat": False}, headers=owner.auth
    )
    body = await assert_problem(resp, 409)
    assert body["details"]["bdr_id"] not in (first["id"], None)
    count = await factory.pool.fetchval("SELECT count(*) FROM batch_download_requests")
    assert count == 5

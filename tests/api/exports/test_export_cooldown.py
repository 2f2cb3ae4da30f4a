"""EXPORT_COOLDOWN_SECONDS is not skipped by cancelling: an export cancelled after a part was
ready counts, and its row outlives the daily purge while its cooldown runs; a request's own
errors (a bad `part_bytes`) come before any answer about the state (409, 429)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from pmd_service.core.settings import Settings
from pmd_service.features.exports.job import process_export
from pmd_service.jobs.context import job_context, state
from pmd_service.upkeep.cleanup import daily_cleanup
from support.seeding import Factory, UserRow
from tests.helpers import SmallApp, assert_problem, eventually

Client = TestClient[Any, Any]
KIB = 1024
DAY = 86400


async def _owner_with_artworks(factory: Factory, n: int) -> UserRow:
    owner = await factory.user()
    for i in range(n):
        await factory.post(owner, title=f"Work {i}", data=f"ART{i}:".encode() + bytes(20 * KIB))
    return owner


async def _post(client: Client, owner: UserRow, **body: Any) -> Any:
    return await client.post("/api/pmd/exports", json=body, headers=owner.auth)


async def _cancelled_after_its_first_part(
    client: Client, pool: asyncpg.Pool, settings: Settings, owner: UserRow
) -> str:
    """An export whose first part the owner downloaded while the next was being built, then
    cancelled: the way around the cooldown."""
    resp = await _post(client, owner)
    assert resp.status == 202, await resp.text()
    export_id = (await resp.json())["id"]
    async with job_context(settings) as ctx:
        st = state(ctx)
        st.bdrs_idle.clear()  # builds wait between artworks: the test lets them through
        job = asyncio.ensure_future(process_export(ctx, export_id))

        async def first_part_ready() -> bool:
            got = await client.get(f"/api/pmd/exports/{export_id}", headers=owner.auth)
            parts = (await got.json())["parts"]
            return bool(parts) and parts[0]["status"] == "ready"

        st.bdrs_idle.set()
        await eventually(first_part_ready, 30, "part 1 ready", interval=0.005)
        st.bdrs_idle.clear()
        item = await (await client.get(f"/api/pmd/exports/{export_id}", headers=owner.auth)).json()
        assert item["status"] == "processing", item
        downloaded = await client.get(item["parts"][0]["download_url"], headers=owner.auth)
        assert downloaded.status == 200 and (await downloaded.read())[:2] == b"PK"
        resp = await client.delete(f"/api/pmd/exports/{export_id}", headers=owner.auth)
        assert resp.status == 204
        st.bdrs_idle.set()
        await job
    row = await pool.fetchrow("SELECT status FROM exports WHERE id = $1", uuid.UUID(export_id))
    assert row is not None and row["status"] == "cancelled"
    return str(export_id)


async def test_an_export_cancelled_after_a_part_was_ready_counts_for_the_cooldown(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool
) -> None:
    owner = await _owner_with_artworks(factory, 12)
    await _cancelled_after_its_first_part(ex_client, pool, small, owner)

    refused = await assert_problem(await _post(ex_client, owner), 429)
    assert 3500 < refused["retry_after_seconds"] <= 3600
    listed = await (await ex_client.get("/api/pmd/exports", headers=owner.auth)).json()
    assert listed["next_export_at"] is not None
    # Cancelled before any part was ready: it does not count (the next starts at once).
    other = await _owner_with_artworks(factory, 2)
    resp = await _post(ex_client, other)
    assert resp.status == 202
    export_id = (await resp.json())["id"]
    assert (
        await ex_client.delete(f"/api/pmd/exports/{export_id}", headers=other.auth)
    ).status == 204
    assert (await _post(ex_client, other)).status == 202


async def test_the_purge_keeps_an_export_that_counts_while_its_cooldown_runs(
    small_app: SmallApp, factory: Factory, pool: asyncpg.Pool
) -> None:
    """A cooldown longer than the 14 days finished rows are kept: the row that starts it stays."""
    long, client = await small_app(export_cooldown_seconds=30 * DAY)
    owner = await _owner_with_artworks(factory, 12)
    counted = await _cancelled_after_its_first_part(client, pool, long, owner)
    # A cancel before any part, as old: it does not count, so it goes.
    gone = await pool.fetchval(
        "INSERT INTO exports (user_id, user_sqid, part_bytes, status, completed_at) "
        "VALUES ($1, $2, $3, 'cancelled', now()) RETURNING id",
        owner.id,
        owner.sqid,
        64 * KIB,
    )
    await pool.execute(
        "UPDATE exports SET created_at = now() - interval '20 days', "
        "completed_at = now() - interval '20 days' WHERE user_id = $1",
        owner.id,
    )
    async with job_context(long) as ctx:
        await daily_cleanup(ctx)
    left = {
        r["id"] for r in await pool.fetch("SELECT id FROM exports WHERE user_id = $1", owner.id)
    }
    assert left == {uuid.UUID(counted)}, (left, gone)
    refused = await assert_problem(await _post(client, owner), 429)
    assert 9 * DAY < refused["retry_after_seconds"] <= 10 * DAY


async def test_a_bad_part_bytes_is_a_400_naming_it_whatever_the_state(
    ex_client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    owner = await _owner_with_artworks(factory, 2)
    resp = await _post(ex_client, owner)
    assert resp.status == 202
    export_id = uuid.UUID((await resp.json())["id"])
    # One running (the 409's state), then one ready within the cooldown (the 429's).
    for status in ("pending", "ready"):
        await pool.execute("UPDATE exports SET status = $2 WHERE id = $1", export_id, status)
        await assert_problem(await _post(ex_client, owner), 409 if status == "pending" else 429)
        bad = await assert_problem(await _post(ex_client, owner, part_bytes=10), 400)
        assert bad["errors"][0]["field"] == "part_bytes" and "got 10" in bad["detail"], status


async def test_a_failed_export_removed_by_its_owner_does_not_count(
    ex_client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """Removing a failed export (DELETE: `expired`, `removed_at` set) does not start a cooldown
    the failure itself did not start."""
    owner = await _owner_with_artworks(factory, 2)
    resp = await _post(ex_client, owner)
    assert resp.status == 202
    export_id = (await resp.json())["id"]
    await pool.execute(
        "UPDATE exports SET status = 'failed', error_message = 'every artwork was missing', "
        "completed_at = now() WHERE id = $1",
        uuid.UUID(export_id),
    )
    assert (
        await ex_client.delete(f"/api/pmd/exports/{export_id}", headers=owner.auth)
    ).status == 204
    removed = await (
        await ex_client.get(f"/api/pmd/exports/{export_id}", headers=owner.auth)
    ).json()
    assert removed["status"] == "expired" and removed["removed_at"] is not None
    assert (await _post(ex_client, owner)).status == 202

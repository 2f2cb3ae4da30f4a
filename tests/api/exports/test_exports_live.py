"""An export's life on the SSE stream (its owner's only, resumable among BDR events) and in a
bucket (a cancel leaves no object, no upload)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import msgspec
import obstore
import pytest
from aiohttp.test_utils import TestServer

from pmd_service.core.objects import incomplete_uploads, open_store
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seaweed import ACCESS_KEY, REGION, SECRET_KEY, Seaweed
from support.seeding import Factory, UserRow
from support.sse import SSE, Message, open_stream
from tests.helpers import eventually, run_worker

KIB = 1024


@pytest.fixture
def small(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, export_min_part_bytes=KIB, export_part_bytes=48 * KIB)


@pytest.fixture
async def served(
    small: Settings, pool: asyncpg.Pool, redis_clean: None
) -> AsyncIterator[TestServer]:
    server = TestServer(create_app(small))
    await server.start_server()
    yield server
    await server.close()


async def start_export(
    session: aiohttp.ClientSession, server: TestServer, user: UserRow
) -> dict[str, Any]:
    resp = await session.post(server.make_url("/api/pmd/exports"), json={}, headers=user.auth)
    assert resp.status == 202, await resp.text()
    item: dict[str, Any] = await resp.json()
    return item


async def some_art(factory: Factory, owner: UserRow, n: int, size: int = 20 * KIB) -> None:
    for i in range(n):
        await factory.post(owner, data=f"A{i}".encode() + b"x" * size)


def export_events(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.event == "export_update"]


async def test_export_updates_are_live_resumable_and_the_owners_alone(
    served: TestServer, session: aiohttp.ClientSession, factory: Factory, small: Settings
) -> None:
    owner = await factory.user()
    mod = await factory.user(roles=["user", "moderator"])
    await some_art(factory, owner, 6)
    url = str(served.make_url(SSE))
    as_mod = {"target_sqid": owner.sqid}
    async with (
        open_stream(session, url, owner.auth) as own,
        open_stream(session, url, mod.auth, as_mod) as watched,
    ):
        await own.opening()
        await watched.opening()
        item = await start_export(session, served, owner)
        await run_worker(small)

        def ready(m: Message) -> bool:
            return m.event == "export_update" and m.json()["status"] == "ready"

        seen = export_events(await own.until(ready, within=30))
        # A BDR requested by the moderator for the user is the one thing the moderator's
        # stream gets: export events never reach it.
        resp = await session.post(
            served.make_url("/api/pmd/bdr"),
            headers=mod.auth,
            json={
                "post_ids": [
                    await factory.pool.fetchval(
                        "SELECT min(id) FROM posts WHERE owner_id = $1", owner.id
                    )
                ],
                "target_sqid": owner.sqid,
            },
        )
        assert resp.status == 202
        got = await watched.until(lambda m: m.event == "bdr_update", within=15)
        assert [m.event for m in got] == ["bdr_update"], [m.event for m in got]

    assert all(m.json()["id"] == item["id"] for m in seen)
    statuses = [m.json()["status"] for m in seen]
    assert statuses[0] == "pending" and statuses[-1] == "ready" and "processing" in statuses
    final = seen[-1].json()
    parts = final["parts"]
    assert len(parts) >= 2 and all(p["status"] == "ready" and p["download_url"] for p in parts)
    # Parts appear, then turn ready one by one: an event for each.
    ready_counts = [sum(p["status"] == "ready" for p in m.json()["parts"]) for m in seen]
    assert ready_counts == sorted(ready_counts) and set(range(len(parts) + 1)) <= set(ready_counts)
    ids = [int(m.id) for m in seen if m.id is not None]
    assert len(ids) == len(seen) and ids == sorted(ids)

    # Resume from the middle: exactly the rest, in order, then connected.
    middle = ids[len(ids) // 2]
    async with open_stream(session, url, owner.auth | {"Last-Event-ID": str(middle)}) as again:
        opening = await again.opening()
    resumed = [int(m.id) for m in opening if m.event == "export_update" and m.id]
    assert resumed == [i for i in ids if i > middle]
    # A new stream's snapshot holds the export as it is now; a moderator's holds none.
    async with open_stream(session, url, owner.auth) as fresh:
        snapshot = export_events(await fresh.opening())
    assert [m.json()["status"] for m in snapshot] == ["ready"]
    assert snapshot[0].json()["parts"] == parts
    async with open_stream(session, url, mod.auth, as_mod) as fresh:
        assert export_events(await fresh.opening()) == []
    # The moderator resuming from the export's first event: the BDR since, no export event.
    async with open_stream(session, url, mod.auth | {"Last-Event-ID": str(ids[0])}, as_mod) as s:
        assert [m.event for m in (await s.opening())[1:]] == ["bdr_update", "connected"]


async def test_cancel_leaves_no_object_and_no_upload_in_the_bucket(
    settings: Settings,
    pool: asyncpg.Pool,
    redis_clean: None,
    factory: Factory,
    session: aiohttp.ClientSession,
    seaweed: Seaweed,
    s3_bucket: str,
    s3_prefix: str,
    worker_ctx_for: Callable[[Settings], Awaitable[dict[str, Any]]],
) -> None:
    from pmd_service.features.exports.job import process_export
    from pmd_service.jobs.context import state

    bucketed = msgspec.structs.replace(
        settings,
        export_min_part_bytes=KIB,
        export_part_bytes=48 * KIB,
        zip_store=f"s3://{s3_bucket}/{s3_prefix}",
        aws_endpoint_url=seaweed.endpoint,
        aws_region=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    server = TestServer(create_app(bucketed))
    await server.start_server()
    owner = await factory.user()
    await some_art(factory, owner, 8)
    try:
        item = await start_export(session, server, owner)
        ctx = await worker_ctx_for(bucketed)
        st = state(ctx)
        st.bdrs_idle.clear()  # hold the build between artworks
        job = asyncio.ensure_future(process_export(ctx, item["id"]))
        export_id = uuid.UUID(item["id"])

        async def one_ready() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM export_parts WHERE export_id = $1 AND status = 'ready'",
                export_id,
            )
            return bool(n)

        st.bdrs_idle.set()
        await eventually(one_ready, within=30, what="a first part published")
        st.bdrs_idle.clear()  # the next part's upload is under way, held mid-build
        bucket = bucketed.zip_bucket
        assert bucket is not None
        store = open_store(bucket, bucketed.s3_access)
        listed = [m["path"] async for batch in obstore.list(store) for m in batch]
        assert any(str(export_id) in key for key in listed)

        resp = await session.delete(
            server.make_url(f"/api/pmd/exports/{export_id}"), headers=owner.auth
        )
        assert resp.status == 204
        st.bdrs_idle.set()
        assert await asyncio.wait_for(job, 30) == "cancelled"
        listed = [m["path"] async for batch in obstore.list(store) for m in batch]
        assert [k for k in listed if str(export_id) in k] == []
        uploads = await incomplete_uploads(bucket, bucketed.s3_access)
        assert [u for u in uploads if str(export_id) in u.key] == []
        status = await pool.fetchval("SELECT status FROM exports WHERE id = $1", export_id)
        assert status == "cancelled"
    finally:
        await server.close()


@pytest.fixture
async def worker_ctx_for(pool: asyncpg.Pool) -> AsyncIterator[Callable[..., Any]]:
    """The context arq gives jobs, for settings the test chose (closed at the end)."""
    from pmd_service.jobs.context import job_context

    opened: list[Any] = []

    async def make(settings: Settings) -> dict[str, Any]:
        manager = job_context(settings)
        ctx = await manager.__aenter__()
        opened.append(manager)
        return ctx

    yield make
    for manager in opened:
        await manager.__aexit__(None, None, None)


async def test_a_removal_reaches_the_stream_as_removed_not_expired(
    served: TestServer, session: aiohttp.ClientSession, factory: Factory, small: Settings
) -> None:
    owner = await factory.user()
    await some_art(factory, owner, 3)
    item = await start_export(session, served, owner)
    await run_worker(small)
    url = str(served.make_url(SSE))
    async with open_stream(session, url, owner.auth) as stream:
        opening = export_events(await stream.opening())
        assert [(m.json()["status"], m.json()["removed_at"]) for m in opening] == [("ready", None)]
        resp = await session.delete(
            served.make_url(f"/api/pmd/exports/{item['id']}"), headers=owner.auth
        )
        assert resp.status == 204
        got = await stream.until(lambda m: m.event == "export_update", within=15)
    event = export_events(got)[-1].json()
    assert event["status"] == "expired" and event["removed_at"] is not None
    resp = await session.get(served.make_url(f"/api/pmd/exports/{item['id']}"), headers=owner.auth)
    whole = await resp.json()
    # An event is the item without its lists that grow with the export (0008): counts instead.
    # The item's lists that grow, and its counts of an incremental export's changes, are the
    # item's alone.
    item_only = ("skipped", "added_count", "changed_count")
    assert event == {k: v for k, v in whole.items() if k not in item_only}
    assert event["skipped_count"] == len(whole["skipped"])

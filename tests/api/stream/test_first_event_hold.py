"""A new request's first event is held back after the reply (SSE_FIRST_EVENT_HOLD_MS), against
real PostgreSQL, Redis and the worker: the request is queued and built at once, nothing of it
reaches a stream before the hold ends, the event then shows it as it is, a cancel meanwhile is
its first event, and a shutdown announces what is held at once."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from arq.constants import job_key_prefix
from msgspec.structs import replace
from redis.asyncio import Redis

from pmd_service.api.keys import REDIS
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job_sql import job_id
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from support.sse import SSE, Stream, open_stream
from tests.helpers import eventually, run_worker

Client = TestClient[Any, Any]
SQL_ANNOUNCED = "SELECT announced FROM batch_download_requests WHERE id = $1::uuid"
SQL_STATUS = "SELECT status FROM batch_download_requests WHERE id = $1::uuid"


async def queued(redis: Redis, bdr_id: str) -> bool:
    return bool(await redis.exists(f"{job_key_prefix}{job_id(uuid.UUID(bdr_id))}"))


@pytest.fixture
def app(settings: Settings, pool: asyncpg.Pool, redis_clean: None) -> web.Application:
    """The app with a first-event hold (5 s) far longer than anything the tests wait for."""
    return create_app(replace(settings, sse_first_event_hold_ms=5000))


@contextlib.asynccontextmanager
async def opened_stream(client: Client, user: UserRow) -> AsyncIterator[Stream]:
    """`user`'s stream of the app, past its opening: what comes next is an update."""
    async with (
        aiohttp.ClientSession() as http,
        open_stream(http, str(client.make_url(SSE)), headers=user.auth) as stream,
    ):
        await stream.opening()
        yield stream


async def test_the_first_event_follows_the_reply_after_the_hold_with_the_build_coalesced(
    client: Client, settings: Settings, factory: Factory, pool: asyncpg.Pool
) -> None:
    """The build runs during the hold and makes no event; the one first event shows it done."""
    user, posts = await factory.owner_and_posts(2)
    async with opened_stream(client, user) as stream:
        resp = await client.post(
            "/api/pmd/bdr", json={"post_ids": [p.id for p in posts]}, headers=user.auth
        )
        assert resp.status == 202
        bdr_id = (await resp.json())["id"]
        # Queued at once, just after the reply (the build is not delayed); not announced.
        redis = client.app[REDIS]
        await eventually(lambda: queued(redis, bdr_id), 5, "the request is queued")
        assert await pool.fetchval(SQL_ANNOUNCED, bdr_id) is False
        await run_worker(settings)  # claim, progress, ready: all within the hold
        assert await pool.fetchval(SQL_STATUS, bdr_id) == "ready"
        assert await pool.fetchval(SQL_ANNOUNCED, bdr_id) is False
        assert await pool.fetchval("SELECT count(*) FROM stream_events") == 0
        # Then one event, the request as it is by then.
        (first,) = await stream.updates(1)
        assert first.json()["id"] == bdr_id and first.json()["status"] == "ready"
        assert first.json()["progress"] == {"done": 2, "total": 2}
    assert await pool.fetchval("SELECT count(*) FROM stream_events") == 1


async def test_a_cancel_within_the_hold_is_the_first_event(
    client: Client, settings: Settings, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    post = await factory.post(user)
    async with opened_stream(client, user) as stream:
        resp = await client.post("/api/pmd/bdr", json={"post_ids": [post.id]}, headers=user.auth)
        bdr_id = (await resp.json())["id"]
        assert (await client.delete(f"/api/pmd/bdr/{bdr_id}", headers=user.auth)).status == 204
        (first,) = await stream.updates(1)
        assert first.json()["status"] == "cancelled"
        await client.close()  # flushes the hold: its announcement finds nothing to do
    assert await pool.fetchval("SELECT count(*) FROM stream_events") == 1


async def test_a_shutdown_announces_what_is_held_at_once(
    client: Client, settings: Settings, factory: Factory, pool: asyncpg.Pool
) -> None:
    # The shutdown's flush announces them, not the timer.
    user, posts = await factory.owner_and_posts(3)
    ids: list[Any] = []
    for post in posts:
        resp = await client.post("/api/pmd/bdr", json={"post_ids": [post.id]}, headers=user.auth)
        assert resp.status == 202
        ids.append((await resp.json())["id"])
    assert [await pool.fetchval(SQL_ANNOUNCED, i) for i in ids] == [False] * 3
    assert await pool.fetchval("SELECT count(*) FROM stream_events") == 0
    await client.close()  # the app's cleanup: the held announcements go out before Redis closes
    assert [await pool.fetchval(SQL_ANNOUNCED, i) for i in ids] == [True] * 3
    assert await pool.fetchval("SELECT count(*) FROM stream_events") == 3
    redis = Redis.from_url(settings.redis_url)
    try:
        assert [await queued(redis, i) for i in ids] == [True] * 3
    finally:
        await redis.aclose()

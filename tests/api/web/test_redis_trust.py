"""What is read from Redis runs no code and names no one: jobs are JSON, never unpickled, and a
stream ticket someone else wrote into Redis is refused."""

from __future__ import annotations

import json
import logging
import pathlib
import pickle
import time
import uuid
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import serialize_job

from pmd_service.api import tickets
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job_sql import JOB_NAME, job_id
from support.seeding import Factory
from tests.helpers import (
    WORKER_FORMS,
    assert_problem,
    fetch_item,
    request_bdr,
    requested,
    run_worker,
)

Client = TestClient[Any, Any]


class _Touch:
    """Unpickled, it creates a file: what a job written by an intruder would do."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.path,))


@pytest.mark.parametrize("form", WORKER_FORMS)
async def test_a_pickled_job_in_redis_is_failed_unread_and_the_worker_goes_on(
    client: Client,
    factory: Factory,
    settings: Settings,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    form: str,
) -> None:
    owner, _, [item] = await requested(client, factory)
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    try:
        # The service's own job is JSON in Redis.
        stored = await redis.get(job_key_prefix + job_id(uuid.UUID(item["id"])))
        assert stored is not None
        assert json.loads(stored)["f"] == JOB_NAME
        # An intruder's job, stored as arq's default serializer (pickle) stores one.
        marker = tmp_path / "pwned"
        planted = "planted-job"
        raw = serialize_job(JOB_NAME, (_Touch(marker),), {}, None, int(time.time() * 1000))
        # The payload works when unpickled (here, on purpose, our own bytes).
        assert pickle.loads(raw) and marker.exists()  # noqa: S301
        marker.unlink()
        await redis.set(job_key_prefix + planted, raw)
        await redis.zadd(default_queue_name, {planted: int(time.time() * 1000) - 1000})

        with caplog.at_level(logging.ERROR, logger="arq.worker"):
            await run_worker(settings, form)

        assert not marker.exists()
        assert f"deserializing job {planted} failed" in caplog.text
        # Failed and gone from the queue, not retried for ever.
        assert not await redis.exists(job_key_prefix + planted)
        assert await redis.zscore(default_queue_name, planted) is None
    finally:
        await redis.aclose()
    # The same worker run built the real request.
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"


async def _forged_ticket(settings: Settings, stored: dict[str, Any], sealed: bool) -> str:
    ticket = "forged-" + uuid.uuid4().hex
    where = tickets.redis_key(ticket)
    payload = msgspec.json.encode(stored)
    if sealed:  # signed, but with a key other than the service's
        payload = tickets.seal(
            tickets.signing_key("another secret of 32 characters!"), where, payload
        )
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    try:
        await redis.set(where, payload, ex=30)
    finally:
        await redis.aclose()
    return ticket


@pytest.mark.parametrize("sealed", [False, True], ids=["plain JSON", "signed with another key"])
async def test_a_ticket_written_into_redis_by_anyone_else_is_refused(
    client: Client, factory: Factory, settings: Settings, sealed: bool
) -> None:
    victim = await factory.user()
    post = await factory.post(victim)
    item = await request_bdr(client, victim, [post.id])
    stored = {
        "caller_id": victim.id,
        "caller": victim.sqid,
        "target_id": victim.id,
        "target": victim.sqid,
        "exp": time.time() + 3600,
    }
    stream = await _forged_ticket(settings, stored, sealed)
    resp = await client.get("/api/pmd/bdr/sse", params={"ticket": stream})
    status = resp.status
    resp.close()  # a stream opened (the forgery accepted) would never end
    assert status == 401
    download = await _forged_ticket(settings, stored | {"bdr_id": item["id"]}, sealed)
    url = f"/api/pmd/bdr/{item['id']}/download"
    await assert_problem(await client.get(url, params={"ticket": download}), 401)


async def test_a_real_ticket_moved_under_another_ticket_is_refused(
    client: Client, factory: Factory, settings: Settings
) -> None:
    victim = await factory.user()
    resp = await client.post("/api/pmd/bdr/sse-ticket", headers=victim.auth)
    assert resp.status == 200
    real = (await resp.json())["ticket"]
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    mine = "moved-" + uuid.uuid4().hex
    try:
        value = await redis.get(tickets.redis_key(real))
        assert value is not None
        await redis.set(tickets.redis_key(mine), value, ex=30)
    finally:
        await redis.aclose()
    resp = await client.get("/api/pmd/bdr/sse", params={"ticket": mine})
    status = resp.status
    resp.close()
    assert status == 401
    # The real one still opens the stream, once.
    resp = await client.get("/api/pmd/bdr/sse", params={"ticket": real})
    status = resp.status
    resp.close()
    assert status == 200

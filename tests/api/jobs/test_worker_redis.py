"""A worker whose Redis connection drops while it claims a job carries on (arq's claim reads
under WATCH; redis-py makes a lost connection there a WatchError, which ended arq's worker); a
job of the wrong shape written into Redis is failed and removed, the worker going on; a cron
function runs only as its schedule's job, never queued on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient
from arq import cron
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix
from msgspec.structs import replace

from pmd_service.core.redis_client import create_redis, redis_settings
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job_sql import JOB_NAME
from support.seeding import Factory
from support.stack import free_port
from tests.helpers import fetch_item, request_bdr, requested, run_worker

Client = TestClient[Any, Any]


@dataclass
class CuttingProxy:
    """A TCP proxy in front of the real Redis that, once, drops a connection right after
    Redis has answered its WATCH: the client's next command then meets a closed socket."""

    upstream: str
    port: int = field(default_factory=free_port)
    cuts: int = 0
    _armed: bool = True
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        url = urlsplit(self.upstream)
        if url.scheme == "unix":
            return await asyncio.open_unix_connection(url.path)
        return await asyncio.open_connection(url.hostname, url.port or 6379)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open_upstream()
        watched = asyncio.Event()

        async def to_redis() -> None:
            while data := await reader.read(65536):
                if self._armed and b"WATCH" in data.upper():
                    self._armed = False
                    watched.set()
                up_writer.write(data)
                await up_writer.drain()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
                if watched.is_set():  # the WATCH's answer is out: now the connection goes
                    self.cuts += 1
                    return

        pumps = [asyncio.create_task(to_redis()), asyncio.create_task(to_client())]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()

    def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@pytest.fixture
async def cutting_proxy(redis_url: str) -> AsyncIterator[CuttingProxy]:
    proxy = CuttingProxy(redis_url)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", proxy.port)
    yield proxy
    server.close()
    for task in list(proxy._tasks):
        task.cancel()
    await server.wait_closed()


async def test_a_connection_lost_while_claiming_a_job_does_not_end_the_worker(
    client: Client, factory: Factory, settings: Settings, cutting_proxy: CuttingProxy
) -> None:
    owner = await factory.user("watched")
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id])
    db = redis_settings(settings.redis_url).database
    through_proxy = replace(settings, redis_url=f"redis://127.0.0.1:{cutting_proxy.port}/{db}")

    await asyncio.wait_for(run_worker(through_proxy), 120)  # a hang guard, not a timing claim

    assert cutting_proxy.cuts == 1  # the claim's connection was dropped after its WATCH
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"


def _job(**fields: Any) -> dict[str, Any]:
    """A BDR job as arq stores it, with `fields` in place of its own (None: left out)."""
    now = int(time.time() * 1000)
    job = {"f": JOB_NAME, "a": [str(uuid.uuid4())], "k": {}, "t": 1, "et": now} | fields
    return {name: value for name, value in job.items() if value is not None}


MALFORMED = {
    "et as text": _job(et="yesterday"),
    "et past year 9999": _job(et=10**17),
    "et negative": _job(et=-(10**17)),
    "t as text": _job(t="2"),
    "t as a list": _job(t=[1]),
    "f as a list": _job(f=[JOB_NAME]),
    "f as an object": _job(f={"name": JOB_NAME}),
    "a as text": _job(a="x"),
    "k as a list": _job(k=[]),
    "et missing": _job(et=None),
    "f unknown": _job(f="no_such_job"),
    "v of a later release": _job(v=2),
    "v as text": _job(v="1"),
    "not an object": [JOB_NAME],
}


@pytest.mark.parametrize("job", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_job_of_the_wrong_shape_is_failed_and_removed_and_the_worker_goes_on(
    client: Client,
    factory: Factory,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    job: Any,
) -> None:
    owner, _, [item] = await requested(client, factory)
    planted = "planted-" + uuid.uuid4().hex
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    try:
        # Written as its raw bytes, the way anyone who can write to the queue could.
        await redis.set(job_key_prefix + planted, json.dumps(job).encode())
        await redis.zadd(default_queue_name, {planted: int(time.time() * 1000) - 1000})

        with caplog.at_level(logging.WARNING, logger="arq.worker"):
            await asyncio.wait_for(run_worker(settings), 120)  # a hang guard, not a timing claim

        assert [r for r in caplog.records if planted in r.getMessage()], caplog.text
        # Failed and gone: its queue entry, its job and its in-progress key.
        assert await redis.zscore(default_queue_name, planted) is None
        assert not await redis.exists(job_key_prefix + planted)
        assert not await redis.exists(in_progress_key_prefix + planted)
    finally:
        await redis.aclose()
    # The same worker run built the real request.
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"


async def test_a_cron_function_runs_only_as_a_job_its_scheduler_made(
    client: Client, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    async def probe(ctx: dict[str, Any]) -> None:
        ran.append(ctx["job_id"])

    now = int(time.time() * 1000)
    # Its schedule: second 0 of every minute (arq adds 123,456 µs); the last one passed.
    last = (now - 123) // 60_000 * 60_000 + 123
    # What an outsider could queue: arq's own enqueue (a random id), an id in the scheduler's
    # form at a time that is none of the schedule's, and one of its times long past.
    outside = [uuid.uuid4().hex, f"cron:probe:{last + 1000}", f"cron:probe:{last - 86_400_000}"]
    scheduled = f"cron:probe:{last}"  # what the scheduler of a worker made a moment ago
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    try:
        for planted in [*outside, scheduled]:
            body = {"f": "cron:probe", "a": [], "k": {}, "t": 1, "et": now - 1000}
            await redis.set(job_key_prefix + planted, json.dumps(body).encode())
            await redis.zadd(default_queue_name, {planted: now - 1000})
        # Also once at the worker's start: its scheduler's own job.
        crons = [cron(probe, name="cron:probe", second={0}, run_at_startup=True)]
        with caplog.at_level(logging.WARNING, logger="pmd_service.jobs.arq_adapter"):
            await asyncio.wait_for(run_worker(settings, cron_jobs=crons), 120)  # a hang guard
        for planted in outside:
            assert await redis.zscore(default_queue_name, planted) is None
            assert planted not in ran
            assert [r for r in caplog.records if planted in r.getMessage()], caplog.text
    finally:
        await redis.aclose()
    assert scheduled in ran
    assert [job for job in ran if job not in outside and job != scheduled], ran  # start-up's

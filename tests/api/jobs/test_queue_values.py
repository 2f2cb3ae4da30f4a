"""No value in the queue's Redis stops the worker. A malformed value of one job's (its body, its
try count, its in-progress mark, its result, its queue entry) removes that job whole with one log
line; the worker runs the others, a restart finds nothing of it, and the sweep enqueues its
request again. A queue or abort set of the wrong type is removed the same way. Each case drives
the worker as arq drives it, against real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from arq.constants import (
    abort_jobs_ss,
    default_queue_name,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

from pmd_service.core.settings import Settings
from pmd_service.features.bdr.job_sql import job_id
from pmd_service.jobs.arq_adapter import PmdWorker
from pmd_service.upkeep.sweep import sweep
from pmd_service.worker import worker_options
from support.seeding import Factory, UserRow
from tests.helpers import fetch_item, request_bdr, run_worker

Client = TestClient[Any, Any]
Seed = Callable[[ArqRedis, str], Any]  # a coroutine, typed by redis-py as maybe a value
HOUR_MS = 3_600_000


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _body_as_hash(redis: ArqRedis, job: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(job_key_prefix + job)
        pipe.hset(job_key_prefix + job, "f", "process_bdr")
        await pipe.execute()


# One malformed value each, as someone with write access to the queue's Redis could leave it.
MALFORMED: dict[str, Seed] = {
    "body is a hash": _body_as_hash,
    "body is not a job": lambda r, j: r.set(job_key_prefix + j, b"\x80\x04garbage", px=HOUR_MS),
    "try count is text": lambda r, j: r.set(retry_key_prefix + j, "abc"),
    "try count is a hash": lambda r, j: r.hset(retry_key_prefix + j, "n", "1"),
    "try count overflows": lambda r, j: r.set(retry_key_prefix + j, str(2**63 - 1)),
    "try count is negative": lambda r, j: r.set(retry_key_prefix + j, "-5"),
    "in-progress mark is text, for ever": lambda r, j: r.set(in_progress_key_prefix + j, "abc"),
    "in-progress mark never expires": lambda r, j: r.set(in_progress_key_prefix + j, b"1"),
    "in-progress mark is a hash": lambda r, j: r.hset(in_progress_key_prefix + j, "x", "1"),
    "result is a hash": lambda r, j: r.hset(result_key_prefix + j, "r", "1"),
    "result is not one": lambda r, j: r.set(result_key_prefix + j, b"garbage", px=HOUR_MS),
    "queue score is 0": lambda r, j: r.zadd(default_queue_name, {j: 0}),
    "queue score is -inf": lambda r, j: r.zadd(default_queue_name, {j: -math.inf}),
    "queue score is +inf": lambda r, j: r.zadd(default_queue_name, {j: math.inf}),
}
# The ones arq itself raised on, outside its error handling, ending the worker.
CRASHED_ARQ = ["body is a hash", "try count is text", "try count is a hash", "queue score is -inf"]


@dataclass(frozen=True)
class Queue:
    """What each case drives: the app, the seeder, the worker's settings and cron ctx, the log."""

    client: Client
    factory: Factory
    settings: Settings
    ctx: dict[str, Any]
    caplog: pytest.LogCaptureFixture

    @property
    def redis(self) -> ArqRedis:
        redis: ArqRedis = self.ctx["redis"]
        return redis

    async def requested(self, owner: UserRow) -> str:
        """The id of a new request of one new post of `owner`'s."""
        return str(
            (await request_bdr(self.client, owner, [(await self.factory.post(owner)).id]))["id"]
        )

    async def worked(self, level: int = logging.WARNING) -> None:
        """The worker run to the end of the queue, its lines from `level` on captured."""
        with self.caplog.at_level(level):
            await run_worker(self.settings)

    async def status(self, owner: UserRow, bdr_id: str) -> str:
        """The request's status, as its owner reads it."""
        return str((await fetch_item(self.client, owner, bdr_id))["status"])


@pytest.fixture
def queue(
    client: Client,
    factory: Factory,
    settings: Settings,
    worker_ctx: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> Queue:
    return Queue(client, factory, settings, worker_ctx, caplog)


def _lines_naming(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and text in r.getMessage()
    ]


async def _nothing_left_of(redis: ArqRedis, job: str) -> None:
    assert [k for k in await redis.keys("arq:*") if job.encode() in k] == []
    assert await redis.zscore(default_queue_name, job) is None


async def _swept_to_ready(q: Queue, owner: UserRow, bdr_id: str, age: str = "40 seconds") -> None:
    """Nothing lost: the request the removed job was for is still pending, and the sweep
    (past its grace) enqueues it again under a job of its own, which the worker builds."""
    assert await q.status(owner, bdr_id) == "pending"
    await q.factory.pool.execute(
        f"UPDATE batch_download_requests SET created_at = now() - interval '{age}' "
        "WHERE id = $1::uuid",
        bdr_id,
    )
    assert (await sweep(q.ctx))["requeued"] == 1
    await run_worker(q.settings)
    assert await q.status(owner, bdr_id) == "ready"


async def _removed_with_one_line_and_swept(q: Queue, seed: Seed) -> None:
    owner = await q.factory.user()
    good, bad = [await q.requested(owner) for _ in range(2)]
    bad_job = job_id(uuid.UUID(bad))
    await seed(q.redis, bad_job)

    await q.worked()  # returns: the worker went on to the end of the queue
    assert await q.status(owner, good) == "ready"
    assert len(_lines_naming(q.caplog, bad_job)) == 1, q.caplog.text
    await _nothing_left_of(q.redis, bad_job)

    q.caplog.clear()
    await q.worked(logging.INFO)  # a restart: nothing of the removed job comes back
    assert _lines_naming(q.caplog, bad_job) == []
    assert not [r for r in q.caplog.records if "→" in r.getMessage()], "a job ran again"

    await _swept_to_ready(q, owner, bad)


@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_value_of_a_job_removes_that_job_and_the_worker_goes_on(
    queue: Queue, case: str
) -> None:
    await _removed_with_one_line_and_swept(queue, MALFORMED[case])


@pytest.mark.parametrize("case", CRASHED_ARQ)
async def test_what_arq_raises_on_removes_the_job_even_unread_beforehand(
    queue: Queue, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """A value changed between the worker's read and arq's own (or one the read does not know)
    is caught where arq raises: the job is removed all the same."""

    async def nothing_read(self: PmdWorker, job_ids: list[bytes]) -> set[bytes]:
        return set()

    monkeypatch.setattr(PmdWorker, "_drop_malformed", nothing_read)
    await _removed_with_one_line_and_swept(queue, MALFORMED[case])


async def test_a_queue_entry_whose_id_is_not_utf8_is_removed_and_the_worker_goes_on(
    queue: Queue,
) -> None:
    owner = await queue.factory.user()
    good = await queue.requested(owner)
    bad = b"\xff\xfe-planted"
    await queue.redis.set(job_key_prefix.encode() + bad, b"{}", px=HOUR_MS)
    await queue.redis.zadd(default_queue_name, {bad: _now_ms() - 1000})

    await queue.worked()
    assert await queue.status(owner, good) == "ready"
    assert len(_lines_naming(queue.caplog, "-planted")) == 1, queue.caplog.text
    assert [k for k in await queue.redis.keys("arq:*") if bad in k] == []
    assert await queue.redis.zcard(default_queue_name) == 0


async def test_an_abort_set_of_the_wrong_type_is_removed_and_every_job_finishes(
    queue: Queue,
) -> None:
    """arq removes each finished job from the abort set in the same MULTI: a string there
    failed every job's finish, ending the worker."""
    owner = await queue.factory.user()
    requests = [await queue.requested(owner) for _ in range(2)]
    await queue.redis.set(abort_jobs_ss, "abc")

    await queue.worked()
    for bdr_id in requests:
        assert await queue.status(owner, bdr_id) == "ready"
    assert len(_lines_naming(queue.caplog, abort_jobs_ss)) == 1, queue.caplog.text
    assert not await queue.redis.exists(abort_jobs_ss)
    assert await queue.redis.zcard(default_queue_name) == 0


async def test_a_queue_of_the_wrong_type_is_removed_and_its_requests_are_swept(
    queue: Queue,
) -> None:
    """arq's poll reads the queue as a sorted set: a string there ended the worker at once.
    Removed, the jobs it held are lost to Redis, not to their requests."""
    owner = await queue.factory.user()
    bdr_id = await queue.requested(owner)
    await queue.redis.delete(default_queue_name)
    await queue.redis.set(default_queue_name, "abc")

    await queue.worked()
    lines = _lines_naming(queue.caplog, f"{default_queue_name} was a string")
    assert len(lines) == 1, queue.caplog.text
    assert not await queue.redis.exists(default_queue_name)
    # Its job's body still holds the plain id: the sweep's later, fresh job builds it.
    await _swept_to_ready(queue, owner, bdr_id, age="6 minutes")


async def test_a_job_cancelled_at_shutdown_before_it_ran_is_left_queued_for_the_next_worker(
    client: Client, factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    """A signal that cancels a job while arq still reads it ends the job's task quietly (arq's
    close() would raise its CancelledError and the process exit with an error), releases its
    in-progress mark, and the next worker builds it."""
    owner = await factory.user()
    item = await request_bdr(client, owner, [(await factory.post(owner)).id])
    redis: ArqRedis = worker_ctx["redis"]
    job = job_id(uuid.UUID(item["id"]))
    await redis.psetex(in_progress_key_prefix + job, HOUR_MS, b"1")  # as start_jobs marks it
    options = worker_options(settings) | {"cron_jobs": [], "redis_pool": redis}
    worker = PmdWorker(handle_signals=False, **options)
    task = asyncio.create_task(worker.run_job(job, _now_ms()))
    worker.tasks[job] = task
    await asyncio.sleep(0)  # the task now waits on its first read of the job
    worker.handle_sig(signal.SIGTERM)

    await asyncio.gather(*worker.tasks.values())  # as arq's close() waits for them

    assert task.done() and not task.cancelled()
    assert await redis.exists(in_progress_key_prefix + job) == 0
    assert await redis.zscore(default_queue_name, job) is not None
    await run_worker(settings)
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"


async def test_a_job_still_reading_when_the_shutdown_wait_ends_ends_quietly(
    settings: Settings,
) -> None:
    """SIGTERM's handler lets running jobs finish for `job_completion_wait`, then cancels them:
    a job still waiting on its first read of Redis (here a Redis that never answers) ends
    quietly too, as after `handle_sig`, instead of ending arq's close() with its error."""

    heard: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(writer)
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = ArqRedis(host="127.0.0.1", port=port, socket_timeout=0.5)
    options = worker_options(settings) | {"cron_jobs": [], "redis_pool": redis}
    worker = PmdWorker(handle_signals=False, **options | {"job_completion_wait": 0.05})
    try:
        task = asyncio.create_task(worker.run_job("stuck", _now_ms()))
        worker.tasks["stuck"] = task
        worker.handle_sig_wait_for_completion(signal.SIGTERM)

        await asyncio.gather(*worker.tasks.values())  # as arq's close() waits for them

        assert task.done() and not task.cancelled()
    finally:
        await redis.aclose()
        for writer in heard:
            writer.close()
        server.close()
        await server.wait_closed()

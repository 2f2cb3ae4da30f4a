"""The download path under faults: retries, cancellation, a killed worker, Redis and SMTP down."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient, AiohttpServer
from redis.backoff import AbstractBackoff

from pmd_service.core.codes import ITEM_SENTENCES, HostCode
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.dev.embedded import EmbeddedRedis
from pmd_service.features.bdr.archive import BdrZip
from pmd_service.features.bdr.job import BDR, Run, process_bdr
from pmd_service.features.bdr.job_sql import job_id
from pmd_service.features.bdr.mail import send_bdr_email
from pmd_service.host.mentions import NONE, Mentions
from pmd_service.host.vault import relative_artwork_path
from pmd_service.jobs.context import job_context, state
from pmd_service.jobs.driver import publish_archive
from pmd_service.jobs.kind import Claim, Settled
from pmd_service.jobs.queueing import MAX_ATTEMPTS
from pmd_service.mail.language import words
from pmd_service.upkeep.sweep import sweep
from pmd_service.web.app import create_app
from pmd_service.zipbuild.build import BuildCancelled, BuildResult
from pmd_service.zipbuild.content import Plan
from support.mailbox import Mailbox
from support.seeding import Factory, PostRow, UserRow
from support.stack import free_port, service_env
from tests.helpers import (
    CHECKOUT,
    HUNG,
    DatabaseRelay,
    after_worker,
    built,
    direct,
    download_zip,
    eventually,
    fetch_item,
    on_port,
    ready_owing_email,
    request_bdr,
    requested,
    run_worker,
    zip_path,
)

Client = TestClient[Any, Any]


@dataclass
class ArtworkOrigin:
    """A real HTTP artwork server (what ARTWORK_BASE_URL points at), with dials for faults."""

    files: dict[str, bytes] = field(default_factory=dict)
    fail_next: int = 0  # answer 503 to this many requests
    delay: float = 0.0
    requests: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        data = self.files.get(request.match_info["path"])
        return web.Response(body=data) if data is not None else web.Response(status=404)

    def serve(self, post: PostRow) -> None:
        assert post.data is not None
        self.files[relative_artwork_path(post.shard, post.storage_key, post.fmt)] = post.data


async def start_origin(aiohttp_server: AiohttpServer) -> ArtworkOrigin:
    origin = ArtworkOrigin()
    app = web.Application()
    app.router.add_get("/{path:.+}", origin.handle)
    server = await aiohttp_server(app)
    origin.url = str(server.make_url("")).rstrip("/")
    return origin


async def posts_on_origin(
    factory: Factory, owner: UserRow, origin: ArtworkOrigin, n: int
) -> list[PostRow]:
    posts = [
        await factory.post(owner, title=f"remote {i}", data=os.urandom(3000 + i)) for i in range(n)
    ]
    for p in posts:
        origin.serve(p)
    return posts


async def progressed(pool: asyncpg.Pool, bdr_id: str, at_least: int) -> bool:
    done = await pool.fetchval(
        "SELECT progress_done FROM batch_download_requests WHERE id = $1::uuid", bdr_id
    )
    return bool(done >= at_least)


async def statuses(pool: asyncpg.Pool, bdr_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT payload->>'status' AS s FROM stream_events WHERE subject_id = $1::uuid ORDER BY id",
        bdr_id,
    )
    out: list[str] = []
    for r in rows:
        if not out or out[-1] != r["s"]:
            out.append(r["s"])
    return out


async def attempts(pool: asyncpg.Pool, bdr_id: str) -> int:
    count: int = await pool.fetchval(
        "SELECT attempts FROM batch_download_requests WHERE id = $1::uuid", bdr_id
    )
    return count


async def owner_on_origin(
    factory: Factory, aiohttp_server: AiohttpServer, count: int
) -> tuple[ArtworkOrigin, UserRow, list[PostRow]]:
    """A new artwork origin, a new user and `count` artworks of theirs it serves."""
    origin = await start_origin(aiohttp_server)
    owner = await factory.user()
    return origin, owner, await posts_on_origin(factory, owner, origin, count)


async def requested_from_slow_origin(
    client: Client, factory: Factory, aiohttp_server: AiohttpServer, delay: float, count: int
) -> tuple[ArtworkOrigin, UserRow, list[PostRow], dict[str, Any]]:
    """A request of `count` artworks from an origin that answers each fetch after `delay` s:
    the origin, the owner, the posts and the request."""
    origin, owner, posts = await owner_on_origin(factory, aiohttp_server, count)
    origin.delay = delay
    return origin, owner, posts, await request_bdr(client, owner, [p.id for p in posts])


async def built_from_flaky_origin(
    client: Client,
    factory: Factory,
    settings: Settings,
    aiohttp_server: AiohttpServer,
    fail_next: int,
) -> tuple[ArtworkOrigin, UserRow, PostRow, dict[str, Any]]:
    """A request of one artwork from an origin whose next `fail_next` fetches fail, the worker
    run over it (retrying at once): the origin, the owner, the post and the request as it ended."""
    origin, owner, (post,) = await owner_on_origin(factory, aiohttp_server, 1)
    origin.fail_next = fail_next
    item = await request_bdr(client, owner, [post.id])
    await run_worker(replace(settings, artwork_base_url=origin.url, job_retry_base_seconds=0))
    return origin, owner, post, await fetch_item(client, owner, item["id"])


async def test_http_source_keeps_request_order(
    client: Client, factory: Factory, settings: Settings, aiohttp_server: AiohttpServer
) -> None:
    origin, owner, posts = await owner_on_origin(factory, aiohttp_server, 6)
    # Remove the vault copies: the worker must not read them.
    for p in posts:
        for f in settings.vault_path.rglob(f"{p.storage_key}.*"):
            f.unlink()
    origin.files[relative_artwork_path(posts[2].shard, posts[2].storage_key, "png")] = (
        posts[2].data or b""
    )
    del origin.files[relative_artwork_path(posts[4].shard, posts[4].storage_key, "png")]
    worker = replace(settings, artwork_base_url=origin.url, artwork_fetch_concurrency=3)
    item = await after_worker(client, worker, owner, [p.id for p in posts])
    assert item["status"] == "ready"
    assert item["skipped"] == [
        {"post_id": posts[4].id, "public_sqid": posts[4].sqid, "reason": "file_missing"}
    ]
    archive = await download_zip(client, owner, item["id"])
    expected = [p for i, p in enumerate(posts) if i != 4]
    assert [n for n in archive.namelist() if n.startswith("artworks/")] == [
        f"artworks/{p.sqid}.png" for p in expected
    ]
    for p in expected:
        assert archive.read(f"artworks/{p.sqid}.png") == p.data


async def test_transient_failure_retries_then_ready(
    client: Client, factory: Factory, settings: Settings, aiohttp_server: AiohttpServer
) -> None:
    # Every fetch attempt of the first run fails.
    _, owner, post, item = await built_from_flaky_origin(
        client, factory, settings, aiohttp_server, 3
    )
    assert item["status"] == "ready"
    assert await attempts(factory.pool, item["id"]) == 2
    # Never `failed` in between: the status stayed `processing` across the retry.
    assert await statuses(factory.pool, item["id"]) == ["pending", "processing", "ready"]
    archive = await download_zip(client, owner, item["id"])
    assert archive.read(f"artworks/{post.sqid}.png") == post.data


async def test_transient_failure_gives_up_after_three_retries(
    client: Client, factory: Factory, settings: Settings, aiohttp_server: AiohttpServer
) -> None:
    origin, _, _, item = await built_from_flaky_origin(
        client, factory, settings, aiohttp_server, 10**6
    )
    assert item["status"] == "failed"
    assert (item["error_code"], item["error_reason"]) == ("internal", "internal")
    assert item["error_message"] == ITEM_SENTENCES[HostCode.INTERNAL]
    assert await attempts(factory.pool, item["id"]) == 4
    assert await statuses(factory.pool, item["id"]) == ["pending", "processing", "failed"]
    assert origin.requests == 4 * 3  # four runs, three fetch attempts each


async def test_cancel_mid_build_stops_and_removes_the_partial_file(
    client: Client, factory: Factory, settings: Settings, aiohttp_server: AiohttpServer
) -> None:
    origin, owner, _, item = await requested_from_slow_origin(
        client, factory, aiohttp_server, 0.2, 12
    )
    slow = replace(settings, artwork_base_url=origin.url, artwork_fetch_concurrency=1)
    worker = asyncio.create_task(run_worker(slow))
    await eventually(lambda: progressed(factory.pool, item["id"], 2), 10, "two artworks fetched")
    assert (await client.delete(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)).status == 204
    await asyncio.wait_for(worker, 30)
    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "cancelled"
    assert origin.requests < 12  # it stopped early
    folder = settings.zip_path / owner.sqid
    assert list(folder.iterdir()) == []  # no ZIP, no partial file


async def test_two_runs_of_one_bdr_build_it_once(
    client: Client, factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    owner, _, [item] = await requested(client, factory)
    outcomes = await asyncio.gather(
        process_bdr(worker_ctx, item["id"]), process_bdr(worker_ctx, item["id"])
    )
    assert sorted(outcomes) == ["not claimable", "ready"]
    assert await process_bdr(worker_ctx, item["id"]) == "not claimable"
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"


async def test_killed_worker_leaves_no_zip_and_the_sweep_recovers(
    client: Client, factory: Factory, settings: Settings, aiohttp_server: AiohttpServer
) -> None:
    origin, owner, posts, item = await requested_from_slow_origin(
        client, factory, aiohttp_server, 0.25, 16
    )
    env = service_env(settings, ARTWORK_BASE_URL=origin.url, ARTWORK_FETCH_CONCURRENCY="1")
    arq = str(Path(sys.executable).with_name("arq"))
    # Popen does not block; the real worker must be a separate process to be SIGKILLed.
    quiet = subprocess.DEVNULL
    command = [arq, "worker.WorkerSettings"]
    proc = subprocess.Popen(command, cwd=CHECKOUT, env=env, stdout=quiet, stderr=quiet)  # noqa: ASYNC220
    try:
        await eventually(
            lambda: progressed(factory.pool, item["id"], 3), 60, "the worker subprocess's progress"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    final = zip_path(settings, owner, item["id"])
    assert not final.exists()
    assert (await fetch_item(client, owner, item["id"]))["status"] == "processing"

    # The heartbeat goes stale; the sweep hands the BDR to a live worker.
    origin.delay = 0
    stale = replace(settings, job_stale_seconds=1, artwork_base_url=origin.url)

    async def heartbeat_stale() -> bool:  # what the sweep's SQL_ORPHANED asks, to the microsecond
        return bool(
            await factory.pool.fetchval(
                "SELECT heartbeat_at < now() - interval '1 second' FROM batch_download_requests"
                " WHERE id = $1::uuid",
                item["id"],
            )
        )

    await eventually(heartbeat_stale, 10, "the dead run's heartbeat going stale")
    async with job_context(stale) as ctx:
        assert (await sweep(ctx))["retaken"] == 1
    # The dead run's own job stays queued until its arq timeout passes; then arq runs it again.
    # Let that time pass (drop its in-progress mark) so both jobs run now: one builds the ZIP,
    # the other finds nothing to claim.
    redis = create_redis(settings.redis_url or "")
    await redis.delete(f"{in_progress_key_prefix}{job_id(uuid.UUID(item['id']))}")
    await redis.aclose()
    await run_worker(stale)
    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "ready"
    archive = await download_zip(client, owner, item["id"])
    for p in posts:
        assert archive.read(f"artworks/{p.sqid}.png") == p.data


async def test_redis_down_at_post_then_swept_to_ready(
    aiohttp_client: AiohttpClient, factory: Factory, settings: Settings, tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "flaky-redis")
    redis_url = redis.start()
    redis.stop()  # Redis is down when the request arrives
    flaky = replace(settings, redis_url=redis_url, job_pending_grace_seconds=0)
    client = await aiohttp_client(create_app(flaky))
    owner = await factory.user()
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id])  # still 202: the row is committed
    assert (await fetch_item(client, owner, item["id"]))["status"] == "pending"

    redis.start()
    try:
        async with job_context(flaky) as ctx:
            assert (await sweep(ctx))["requeued"] == 1
        await run_worker(flaky)
    finally:
        redis.stop()
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"


async def test_smtp_down_never_fails_the_bdr_and_the_sweep_sends_later(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    owner = await factory.user()
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id], send_email=True)
    await run_worker(replace(settings, smtp_host="127.0.0.1", smtp_port=free_port()))
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"
    row = await factory.pool.fetchrow(
        "SELECT email_sent_at, email_attempts FROM batch_download_requests WHERE id = $1::uuid",
        item["id"],
    )
    assert row is not None
    assert row["email_sent_at"] is None and row["email_attempts"] == 1
    assert smtp.messages == []

    up = replace(settings, smtp_host=smtp.host, smtp_port=smtp.port)
    async with job_context(up) as ctx:
        assert (await sweep(ctx))["emails"] == 1
        assert (await sweep(ctx))["emails"] == 0
    assert len(smtp.messages) == 1
    assert str(item["id"]) in smtp.messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_failed_bdr_emails_what_went_wrong(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    owner = await factory.user()
    post = await factory.post(owner, data=None)
    item = await request_bdr(client, owner, [post.id], send_email=True)
    await run_worker(replace(settings, smtp_host=smtp.host, smtp_port=smtp.port))
    assert (await fetch_item(client, owner, item["id"]))["status"] == "failed"
    assert len(smtp.messages) == 1
    text = smtp.messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # Its code's sentence, as the copy words it, never the run's own text.
    english = words(settings, None)
    for key in ("bdr_failed", "failure_no_posts", "bdr_failed_button"):
        assert english.text(key) in text, key


async def test_a_run_that_lost_its_claim_never_touches_the_published_zip(
    client: Client, factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    owner, _, [item] = await built(client, factory, settings)
    final = zip_path(settings, owner, item["id"])
    published = final.read_bytes()
    # A stale run (its claim long taken over) reaches its publish step with its own file.
    stale_temp = final.with_name(".stale.part")
    stale_temp.write_bytes(b"not the zip the row describes")
    claim = await factory.pool.fetchrow(
        "SELECT user_id, post_ids, include_comments, include_reactions, send_email, attempts,"
        " artwork_count, request_id FROM batch_download_requests WHERE id = $1::uuid",
        item["id"],
    )
    assert claim is not None
    stale = Claim("BDR", uuid.UUID(item["id"]), uuid.uuid4(), claim)
    run = Run(state(worker_ctx), stale)
    resolved: concurrent.futures.Future[Mentions] = concurrent.futures.Future()
    resolved.set_result(NONE)
    archive = BdrZip(run, Plan([], [], {}), owner.handle, owner.sqid, resolved)
    with pytest.raises(BuildCancelled):
        await publish_archive(
            state(worker_ctx),
            BDR,
            stale,
            archive,
            f"bdr/{owner.sqid}/pmd-{item['id']}.zip",
            Settled(BuildResult(size=1, sha256="0" * 64), []),
            stale_temp,
        )
    assert final.read_bytes() == published
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"


async def test_partial_fetch_failure_is_retried_not_shipped(
    client: Client, factory: Factory, settings: Settings, aiohttp_server: AiohttpServer
) -> None:
    origin, owner, posts = await owner_on_origin(factory, aiohttp_server, 2)
    origin.fail_next = 3  # the first artwork's three tries fail; the second one arrives
    item = await request_bdr(client, owner, [p.id for p in posts])
    await run_worker(
        replace(
            settings,
            artwork_base_url=origin.url,
            artwork_fetch_concurrency=1,
            job_retry_base_seconds=0,
        )
    )
    item = await fetch_item(client, owner, item["id"])
    assert item["status"] == "ready"
    assert item["skipped"] == []
    archive = await download_zip(client, owner, item["id"])
    assert len([n for n in archive.namelist() if n.startswith("artworks/")]) == 2


async def test_email_cancelled_mid_send_is_released_for_the_sweep(
    client: Client, factory: Factory, settings: Settings
) -> None:
    connected, done = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()  # an SMTP server that never answers, until the test is over
        try:
            await done.wait()
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bdr_id = await ready_owing_email(client, factory, await factory.user())
    hung = replace(settings, smtp_host="127.0.0.1", smtp_port=port)
    task = asyncio.create_task(send_bdr_email(factory.pool, hung, uuid.UUID(bdr_id)))
    await asyncio.wait_for(connected.wait(), 10)  # the send is waiting for the greeting
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    done.set()
    server.close()
    await server.wait_closed()
    sent_at = await factory.pool.fetchval(
        "SELECT email_sent_at FROM batch_download_requests WHERE id = $1::uuid", bdr_id
    )
    assert sent_at is None  # owed again: the sweep will send it


async def test_a_pending_bdr_whose_job_was_taken_and_never_claimed_gets_a_fresh_job(
    client: Client, factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    """A worker that took the job and died before claiming leaves its id held in arq until the
    job timeout: past the 30 s grace the sweep gives the BDR a fresh job id (a cluster run's
    lost host left one pending for minutes, when this waited 5 min). One queued and not yet
    taken (a backlog) gets none so soon."""
    owner = await factory.user()
    taken, queued = [
        await request_bdr(client, owner, [(await factory.post(owner)).id]) for _ in range(2)
    ]  # each its job `bdr:<id>`, queued
    await factory.pool.execute(
        "UPDATE batch_download_requests SET created_at = now() - interval '40 seconds' "
        "WHERE id = ANY($1::uuid[])",
        [taken["id"], queued["id"]],
    )
    redis = worker_ctx["redis"]
    await redis.set(f"{in_progress_key_prefix}{job_id(uuid.UUID(taken['id']))}", b"1", px=3_600_000)
    assert (await sweep(worker_ctx))["requeued"] == 1
    assert await redis.exists(f"arq:job:{job_id(uuid.UUID(taken['id']), 'held1')}")
    assert (await sweep(worker_ctx))["requeued"] == 0  # one fresh job per grace period
    # Queued, not taken, 6 minutes late: a fresh id then (arq lost track of it somehow).
    await factory.pool.execute(
        "UPDATE batch_download_requests SET created_at = now() - interval '6 minutes' "
        "WHERE id = $1::uuid",
        queued["id"],
    )
    assert (await sweep(worker_ctx))["requeued"] == 1
    assert await redis.exists(f"arq:job:{job_id(uuid.UUID(queued['id']), 'late1')}")


async def test_a_bdr_whose_job_ran_out_of_tries_before_its_claim_is_swept_at_once(
    client: Client, factory: Factory, settings: Settings, worker_ctx: dict[str, Any]
) -> None:
    """A worker cut off from the database retries its claim until arq's tries run out, and arq
    ends the job itself. The row is still pending: past the 30 s grace the sweep enqueues it
    again under its own id, which arq must not hold (it kept the failure an hour, and the BDR
    waited 5 minutes for a fresh id: a cluster run found one pending at its bound)."""
    owner = await factory.user()
    item = await request_bdr(client, owner, [(await factory.post(owner)).id])
    bdr = uuid.UUID(item["id"])
    redis = worker_ctx["redis"]
    # arq counts a job's tries under this key: MAX_ATTEMPTS tries already spent on claims.
    await redis.set(retry_key_prefix + job_id(bdr), MAX_ATTEMPTS)
    await run_worker(settings)  # arq: "max retries exceeded", the job ended without a run
    assert not await redis.exists(result_key_prefix + job_id(bdr))
    assert (await fetch_item(client, owner, item["id"]))["status"] == "pending"
    await factory.pool.execute(
        "UPDATE batch_download_requests SET created_at = now() - interval '40 seconds' "
        "WHERE id = $1",
        bdr,
    )
    assert (await sweep(worker_ctx))["requeued"] == 1
    assert await redis.exists(job_key_prefix + job_id(bdr))
    await run_worker(settings)
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"


class CountingBackoff(AbstractBackoff):
    """The worker's own backoff, counting the failed Redis calls it waits after. One object for
    every connection: redis-py gives each connection a deep copy of the pool's Retry."""

    def __init__(self, inner: AbstractBackoff) -> None:
        self.inner, self.count = inner, 0

    def __deepcopy__(self, memo: dict[int, Any]) -> CountingBackoff:
        return self

    def reset(self) -> None:
        self.inner.reset()  # type: ignore[no-untyped-call]

    def compute(self, failures: int) -> float:
        self.count += 1
        return self.inner.compute(failures)


async def test_a_worker_outlives_a_redis_restart_and_keeps_taking_jobs(
    aiohttp_client: AiohttpClient, factory: Factory, settings: Settings, tmp_path: Path
) -> None:
    """Found by the chaos run: arq's poll loop lets one failed Redis call end the worker, so a
    Redis restart killed every worker (a reconnect refused while Redis was down)."""
    from arq.worker import Worker

    from pmd_service.worker import worker_options

    redis = EmbeddedRedis(tmp_path / "restarting-redis")
    flaky = replace(settings, redis_url=redis.start())
    client = await aiohttp_client(create_app(flaky))
    owner = await factory.user()
    post = await factory.post(owner)
    options = worker_options(flaky) | {"cron_jobs": [], "poll_delay": 0.05}
    retry = options["redis_settings"].retry
    retry._backoff = failures = CountingBackoff(retry._backoff)
    worker = Worker(handle_signals=False, **options)
    running = asyncio.ensure_future(worker.main())

    async def idle() -> bool:  # "ready" is committed before the job's last Redis write
        return all(t.done() for t in worker.tasks.values())

    try:
        first = await request_bdr(client, owner, [post.id])
        await wait_for_status(client, owner, first["id"], "ready")
        # Redis stops while the worker only polls, with no job's write in flight.
        await eventually(idle, 10, "the first job finished")
        redis.stop()
        before = failures.count

        async def refused_often() -> bool:  # as many as 2 s of refusals gave (the backoff grows)
            assert not running.done(), running.exception()
            return failures.count >= before + 4

        await eventually(refused_often, 30, "the worker's Redis calls failing")
        assert not running.done(), running.exception()
        redis.start()
        second = await request_bdr(client, owner, [post.id])
        await wait_for_status(client, owner, second["id"], "ready")
        assert not running.done()
        # Cancelling the worker mid-job made close() re-raise that job's CancelledError and skip
        # closing its Redis connections (a ResourceWarning in a later test).
        await eventually(idle, 10, "the worker's jobs finished")
    finally:
        running.cancel()
        with contextlib.suppress(BaseException):
            await running
        await worker.close()
        redis.stop()


async def wait_for_status(client: Client, owner: UserRow, bdr_id: str, status: str) -> None:
    async def reached() -> bool:
        return bool((await fetch_item(client, owner, bdr_id))["status"] == status)

    await eventually(reached, 60, f"BDR {bdr_id} becoming {status}", interval=0.05)


@pytest.mark.parametrize("job", ["process_bdr", "process_export"])
async def test_a_database_out_of_reach_at_the_claim_is_a_retry(
    settings: Settings, pool: asyncpg.Pool, job: str
) -> None:
    """Before the claim nothing is the run's: a database that cannot be reached then is a
    Retry (arq runs the job again soon), not an error that ends the job as failed with a
    traceback and leaves the row to the sweep."""
    from arq import Retry

    from pmd_service.features.bdr.job import process_bdr
    from pmd_service.features.exports.job import process_export
    from pmd_service.jobs.context import job_context

    relay = DatabaseRelay(settings.direct_url)
    await relay.open()
    through = direct(settings, on_port(settings.direct_url, relay.port))
    run = process_bdr if job == "process_bdr" else process_export
    async with job_context(through) as ctx:
        await relay.cut()
        with pytest.raises(Retry):
            await run(ctx, str(uuid.uuid4()))


async def test_a_sweep_with_the_database_out_of_reach_is_a_warning_not_an_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The every-minute sweep that finds the database gone (a host cut off from it, as the
    cluster run does) says so and ends: the next sweep does its work. Raised, it was arq's
    ERROR "cron:sweep failed" with a traceback, for a condition the service handles."""
    relay = DatabaseRelay(settings.direct_url)
    await relay.open()
    through = direct(settings, on_port(settings.direct_url, relay.port))
    async with job_context(through) as ctx:
        await relay.cut()
        with caplog.at_level("WARNING", logger="pmd_service.upkeep.sweep"):
            done = await asyncio.wait_for(sweep(ctx), HUNG)
    assert done == {"requeued": 0, "retaken": 0, "emails": 0, "uploads_aborted": 0}
    (line,) = [r for r in caplog.records if r.name == "pmd_service.upkeep.sweep"]
    assert line.levelname == "WARNING" and "the next sweep runs in a minute" in line.message

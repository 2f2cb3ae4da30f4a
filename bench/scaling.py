"""Scaling curves through the real processes: a backlog's drain, then USERS users' BDRs at
once: `python -m bench.scaling` (it deletes arq's keys in REDIS_URL's database)."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from arq.connections import ArqRedis
from arq.constants import default_queue_name

from bench import cli
from bench.build import make_small_pixel_art, seed_user
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.worker import MAX_JOBS, POLL_DELAY
from support import stack
from support.measures import cpu_seconds, percentile
from support.sse import SSE, open_stream
from support.stack import eventually, free_port, start_server, start_worker, stop

USERS = 50
ARTWORKS_PER_USER = 8
ARTWORKS_PER_BDR = 4
DRAIN_LIMIT_S = 180.0
HELD_QUEUE = "pmd-bench:held-queue"
BURSTS = 3
SERVER_LOG = stack.CHECKOUT / ".data" / "bench" / "scaling-server.log"

SQL_WORKER_UP = """
SELECT count(*) > 0 FROM pg_stat_activity
WHERE application_name = 'pmd-worker' AND datname = current_database()
"""
# Of the BDRs $1: how many are ready, and how many ended otherwise.
SQL_DRAINED = """
SELECT count(*) FILTER (WHERE status = 'ready') AS ready,
       count(*) FILTER (WHERE status NOT IN ('pending', 'processing', 'ready')) AS other
FROM batch_download_requests WHERE id = ANY($1::uuid[])
"""
SQL_DRAIN_TIMES = """
SELECT extract(epoch FROM max(completed_at))::float8 AS last_done,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at))
           AS claim_ready_p50
FROM batch_download_requests WHERE id = ANY($1::uuid[])
"""


User = tuple[dict[str, str], list[int]]  # a user's auth header and posts


async def post_bdr(http: aiohttp.ClientSession, user: User, n: int) -> str:
    auth, posts = user
    post_ids = [posts[(n + k) % len(posts)] for k in range(ARTWORKS_PER_BDR)]
    async with http.post("/api/pmd/bdr", json={"post_ids": post_ids}, headers=auth) as r:
        assert r.status == 202, (r.status, await r.text())
        bdr_id: str = (await r.json())["id"]
        return bdr_id


@dataclass
class Local:
    http: aiohttp.ClientSession
    users: list[User]
    db: Any  # an asyncpg connection
    redis: ArqRedis
    settings: Settings
    env: dict[str, str]
    worker_pid: int = 0

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[None]:
        proc = start_worker(self.env)
        try:
            # It opens its pool (one connection) in on_startup, just before it starts polling.
            await eventually(lambda: self.db.fetchval(SQL_WORKER_UP), 60, "a worker up", 0.05)
            await asyncio.sleep(1.0)  # its start-up sweep and first polls
            self.worker_pid = proc.pid
            yield
        finally:
            stop(proc)

    async def forget_bdrs(self) -> None:
        """Back to no BDRs (daily limits restart) and no events: every round starts alike."""
        await self.db.execute("DELETE FROM batch_download_requests; DELETE FROM stream_events")
        await self.db.execute("VACUUM ANALYZE batch_download_requests, stream_events")
        await asyncio.to_thread(shutil.rmtree, self.settings.zip_path, True)


async def drain(rig: Local, backlog: int) -> dict[str, Any]:
    share = -(-backlog // len(rig.users))

    async def post(user: User, k: int) -> list[str]:
        return [await post_bdr(rig.http, user, r) for r in range(k)]

    async def queued() -> bool:
        return bool(await rig.redis.zcard(default_queue_name) >= backlog)

    async def ready() -> bool:
        row = await rig.db.fetchrow(SQL_DRAINED, ids)
        assert row["other"] == 0, "a BDR failed or was cancelled"
        return bool(row["ready"] == len(ids))

    posted = await asyncio.gather(
        *(post(u, min(share, backlog - i * share)) for i, u in enumerate(rig.users))
    )
    ids = [i for mine in posted for i in mine]
    # Each is enqueued after its reply is written: held once every one is in the queue.
    await eventually(queued, 30, f"{backlog} BDRs enqueued", 0.05)
    await rig.redis.rename(default_queue_name, HELD_QUEUE)
    async with rig.worker():
        start = await rig.db.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        cpu, wall = cpu_seconds(rig.worker_pid), time.monotonic()
        await rig.redis.rename(HELD_QUEUE, default_queue_name)
        await eventually(ready, DRAIN_LIMIT_S, "the drain", 0.05)
        cpu, wall = cpu_seconds(rig.worker_pid) - cpu, time.monotonic() - wall
    times = await rig.db.fetchrow(SQL_DRAIN_TIMES, ids)
    seconds = times["last_done"] - start
    return {
        "bdrs": backlog,
        "seconds": round(seconds, 3),
        "per_s": round(backlog / seconds, 2),
        "claim_ready_p50_ms": times["claim_ready_p50"] * 1000,
        "worker_cores": cpu / wall,
        "worker_ms_per_bdr": cpu / backlog * 1000,
    }


async def backlog_drains(rig: Local, backlog: int, repeats: int) -> dict[str, Any]:
    """`repeats` drains by one worker: the median rate, and the worker's CPU in the fastest."""
    assert -(-backlog // USERS) <= 8, "the daily limit: more users needed"
    runs = []
    for _ in range(repeats):
        await rig.forget_bdrs()
        runs.append(await drain(rig, backlog))
        cli.show("  one worker", runs[-1])
    return {
        "bdrs": backlog,
        "per_s": statistics.median(r["per_s"] for r in runs),
        "per_s_runs": [r["per_s"] for r in runs],
        "claim_ready_p50_ms": statistics.median(r["claim_ready_p50_ms"] for r in runs),
        **{
            k: max(runs, key=lambda r: r["per_s"])[k] for k in ("worker_cores", "worker_ms_per_bdr")
        },
    }


async def watch_ready(
    http: aiohttp.ClientSession,
    auth: dict[str, str],
    seen: dict[str, float],
    up: asyncio.Future[None],
) -> None:
    async with open_stream(http, SSE, auth) as stream:
        await stream.opening()  # the snapshot (earlier BDRs) comes first: only live events count
        up.set_result(None)
        while (msg := await stream.next(within=None)) is not None:
            if msg.event == "bdr_update" and (item := msg.json())["status"] == "ready":
                seen.setdefault(item["id"], time.perf_counter())


async def burst_latency(rig: Local) -> dict[str, Any]:
    await rig.forget_bdrs()
    seen: dict[str, float] = {}
    ups = [asyncio.get_running_loop().create_future() for _ in rig.users]
    samples: list[float] = []
    replies: list[float] = []  # POST → 202
    spans: list[float] = []  # a burst's first POST → its last ready

    async def post(user: User, b: int, sent: dict[str, float]) -> None:
        start = time.perf_counter()
        sent[await post_bdr(rig.http, user, b)] = start
        if b > 0:
            replies.append(time.perf_counter() - start)

    async with rig.worker():
        streams = [
            asyncio.create_task(watch_ready(rig.http, auth, seen, up))
            for (auth, _), up in zip(rig.users, ups, strict=True)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*ups), 30)
            for b in range(BURSTS + 1):  # the first burst warms the workers up
                sent: dict[str, float] = {}
                await asyncio.gather(*(post(u, b, sent) for u in rig.users))
                arrived = lambda: asyncio.sleep(0, sent.keys() <= seen.keys())  # noqa: B023, E731
                await eventually(arrived, 60, "a burst", 0.05)
                if b > 0:
                    samples += [seen[i] - t for i, t in sent.items()]
                    spans.append(max(seen[i] for i in sent) - min(sent.values()))
        finally:
            for s in streams:
                s.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
    ms = [x * 1000 for x in samples]
    out = {
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "reply_p50_ms": percentile(replies, 0.5) * 1000,
        "reply_p99_ms": percentile(replies, 0.99) * 1000,
        "burst_s": statistics.median(spans),
    }
    cli.show("  one worker", out)
    return out


async def run(backlog: int, repeats: int) -> dict[str, Any]:
    async with (
        stack.fresh_stack() as settings,
        stack.connected(settings.database_url, "pmd-bench") as conn,
        create_redis(settings.redis_url) as redis,
    ):
        # arq's keys of an earlier run that died: its jobs would count in this run's backlog.
        await redis.delete(HELD_QUEUE, *[key async for key in redis.scan_iter(match="arq:*")])
        env, port = cli.service_env(settings), free_port()
        SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
        with SERVER_LOG.open("wb") as log:  # the server keeps a descriptor of its own
            server = await asyncio.to_thread(start_server, env, port, log)
        try:
            files = make_small_pixel_art(settings.zip_path.parent / "sources", ARTWORKS_PER_USER)
            seeded = [await seed_user(conn, settings, f"scale{i}", files) for i in range(USERS)]
            await conn.execute("VACUUM ANALYZE")
            users = [(owner.auth, post_ids) for owner, post_ids in seeded]
            # arq starts at most max_jobs jobs a poll.
            figures: dict[str, Any] = {"config": {"poll_ceiling_per_worker": MAX_JOBS / POLL_DELAY}}
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                rig = Local(http, users, conn, redis, settings, env)
                print(
                    f"1. a backlog of {backlog} BDRs of {ARTWORKS_PER_BDR} small artworks "
                    f"({USERS} users), drained by a fresh worker:",
                    flush=True,
                )
                figures["backlog"] = await backlog_drains(rig, backlog, repeats)
                print(
                    f"2. {USERS} users POST one BDR each at once ({BURSTS} bursts), "
                    "POST → `ready` on their SSE streams:",
                    flush=True,
                )
                figures["burst"] = await burst_latency(rig)
        finally:
            stop(server)
    print(f"BDRs per second, one worker (median of runs): {figures['backlog']['per_s']:.1f}")
    return figures


if __name__ == "__main__":
    parser = cli.parser("scaling", __doc__)
    parser.add_argument("--backlog", type=int, default=300, help="BDRs per drain (≤ 8 a user)")
    parser.add_argument("--repeats", type=int, default=3, help="drains by one worker")
    args = parser.parse_args()
    cli.save(args.json, asyncio.run(run(args.backlog, args.repeats)))

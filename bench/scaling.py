"""Scaling curves through the real processes: `python -m bench.scaling`.

Not a test: prints figures, exits 0. One `python server.py` and 1, 2 or 4 `arq
worker.WorkerSettings` processes on a fresh database, driven over HTTP as clients drive them:

1. **Backlog.** `--backlog` small BDRs (`ARTWORKS_PER_BDR` pixel-art PNGs each) POSTed by
   `USERS` users (the daily limit is 8 a user, so the backlog is spread over many) while no
   worker runs, then drained by 1, 2 and 4 fresh worker processes: BDRs completed per second.
   The queue is held aside (a Redis RENAME) until every worker is up, so the figure is the
   drain, not the workers' start-up. The CPU time of every process taking part (workers, server,
   this database's PostgreSQL backends, Redis) and of the whole machine is read from /proc
   around each drain, so a plateau can be told apart: CPU saturated, or something waited on.
2. **Burst.** `USERS` users, each following their SSE stream, POST one small BDR each at the
   same moment: POST → the `ready` event on the stream, p50/p99, with 1, 2 and 4 workers.
3. **Events.** `bdr_events` seeded to `--events` rows (generate_series; 2 days of events, so
   half are older than the 1-day retention, as before a daily cleanup) with real payloads; a
   stream resuming from an old Last-Event-ID replays N events (time to `event: connected`, and
   its SQL alone through asyncpg); then `cleanup_expired_bdrs` run as the ops CLI runs it, its
   time and what it did to event writes happening meanwhile (a BDR progress update every 10 ms).

The machine's cores are shared with everything else on it: read ratios within one run. Redis:
arq's keys in REDIS_URL's database are deleted first (a dead run's jobs would join the backlog),
so give it a database no running worker uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
import asyncpg
from arq.connections import ArqRedis
from arq.constants import default_queue_name

from bench import cli
from bench.job import seed_user
from bench.zip import make_small_pixel_art
from pmd_service.core.db import connect
from pmd_service.core.queue import create_redis
from pmd_service.core.settings import Settings
from pmd_service.host.tokens import mint_token
from pmd_service.jobs.context import job_context, state
from pmd_service.jobs.upkeep.cleanup import cleanup_expired_bdrs
from pmd_service.jobs.worker import MAX_JOBS, POLL_DELAY
from pmd_service.sse.replay import MAX_REPLAY, SQL_EVENT_KNOWN, SQL_MISSED
from support.measures import cpu_seconds, machine_seconds, percentile
from support.stack import (
    CHECKOUT,
    free_port,
    fresh_stack,
    service_env,
    start_server,
    start_worker,
    stop,
)

USERS = 50
ARTWORKS_PER_USER = 8
ARTWORKS_PER_BDR = 4
WORKER_COUNTS = (1, 2, 4)
HELD_QUEUE = "pmd-bench:held-queue"
DRAIN_LIMIT_S = 180.0
BURSTS = 3
EVENT_DAYS = 2  # events kept 1 day and purged daily: just before a cleanup the table holds ~2
OTHER_EVENT_USERS = 10_000
REPLAYS = (10, 100, 1000, MAX_REPLAY, MAX_REPLAY + 1000)
# The replaying user's events: twice the longest replay, spread evenly through the table.
REPLAYER_EVENTS = 2 * max(REPLAYS)
REPLAY_ROUNDS = 15
PROBE_EVERY_S = 0.01
T = TypeVar("T")
CONNECTED = b"event: connected"
SERVER_LOG = CHECKOUT / ".data" / "bench" / "scaling-server.log"

SQL_OUR_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
# The WAL writer, checkpointer and background writer serve every database on the server (the
# other sessions' too), so they are reported apart from this database's backends.
SQL_SHARED_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname IS NULL"
SQL_WORKERS_UP = """
SELECT count(*) FROM pg_stat_activity
WHERE application_name = 'pmd-worker' AND datname = current_database()
"""
# Of the BDRs $1 (all when NULL): how many are ready, and how many ended otherwise.
SQL_DRAINED = """
SELECT count(*) FILTER (WHERE status = 'ready') AS ready,
       count(*) FILTER (WHERE status NOT IN ('pending', 'processing', 'ready')) AS other
FROM batch_download_requests WHERE $1::uuid[] IS NULL OR id = ANY($1::uuid[])
"""
SQL_DRAIN_TIMES = """
SELECT extract(epoch FROM max(completed_at))::float8 AS last_done,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at))
           AS claim_ready_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at))
           AS claim_ready_p90
FROM batch_download_requests
"""
# $1 events over $7 seconds up to now, of which the first $9 (oldest first); one in $4 is user
# $3's, the others spread over $6 users from $5 (no such users: events outlive their rows).
SQL_SEED_EVENTS = """
INSERT INTO bdr_events (bdr_id, user_id, created_at, payload)
SELECT $2::uuid,
       CASE WHEN g % $4 = 0 THEN $3 ELSE $5 + g % $6 END,
       now() - make_interval(secs => $7 * (1 - g::float8 / $1)),
       $8::text::jsonb
FROM generate_series(1, $9) AS g
"""
# The probe row: its progress updates are event writes (the trigger appends and notifies), and
# its insert's event, a ready row's, is the payload the seeded events copy.
SQL_PROBE_ROW = """
INSERT INTO batch_download_requests
    (user_id, user_sqid, post_ids, artwork_count, status, started_at, completed_at, expires_at,
     file_path, file_size_bytes, file_sha256, attempts)
VALUES ($1, $2, $3, cardinality($3::int[]), 'ready', now(), now(), now() + interval '7 days',
        'bdr/x/pmd-x.zip', 123456, repeat('a', 64), 1)
RETURNING id
"""
SQL_PROBE = "UPDATE batch_download_requests SET progress_done = progress_done + 1 WHERE id = $1"


class CpuMeter:
    """CPU seconds spent by each party between `start()` and `stop()`."""

    def __init__(self, conn: asyncpg.Connection, redis: ArqRedis, server: int, workers: list[int]):
        self.conn, self.redis, self.server, self.workers = conn, redis, server, workers

    async def _sample(self) -> dict[str, Any]:
        ours = [r["pid"] for r in await self.conn.fetch(SQL_OUR_BACKENDS)]
        shared = [r["pid"] for r in await self.conn.fetch(SQL_SHARED_BACKENDS)]
        info = await self.redis.info("cpu")
        busy, iowait = machine_seconds()
        return {
            "workers": [cpu_seconds(p) for p in self.workers],
            "server": cpu_seconds(self.server),
            "postgres": {p: cpu_seconds(p) for p in ours},
            "pg_shared": {p: cpu_seconds(p) for p in shared},
            "redis": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "bench": sum(os.times()[:2]),
            "machine": busy,
            "iowait": iowait,
            "wall": time.monotonic(),
        }

    async def start(self) -> None:
        self.before = await self._sample()

    async def stop(self) -> dict[str, Any]:
        b, a = self.before, await self._sample()

        def backends(key: str) -> float:
            # A backend that started meanwhile started at 0 CPU.
            spent: float = sum(cpu - b[key].get(pid, 0.0) for pid, cpu in a[key].items())
            return spent

        per_worker = [x - y for x, y in zip(a["workers"], b["workers"], strict=True)]
        spent = {
            "workers_s": sum(per_worker),
            "server_s": a["server"] - b["server"],
            "postgres_s": backends("postgres"),
            "pg_shared_s": backends("pg_shared"),
            "redis_s": a["redis"] - b["redis"],
            "bench_s": a["bench"] - b["bench"],
        }
        busy = a["machine"] - b["machine"]
        return {
            "wall_s": a["wall"] - b["wall"],
            "per_worker_s": per_worker,
            **spent,
            # The rest of the machine's busy time: other work sharing the cores.
            "others_s": max(0.0, busy - sum(spent.values())),
            "machine_busy_s": busy,
            "machine_iowait_s": a["iowait"] - b["iowait"],
        }


# --- the stack -----------------------------------------------------------------------------


class Users:
    def __init__(self, ids: list[int], tokens: list[str], posts: list[list[int]]) -> None:
        self.ids, self.tokens, self.posts = ids, tokens, posts


async def seed_users(conn: asyncpg.Connection, settings: Settings, sources: Path) -> Users:
    files = make_small_pixel_art(sources, ARTWORKS_PER_USER)
    ids, tokens, posts = [], [], []
    for i in range(USERS):
        owner, post_ids = await seed_user(conn, settings, f"scale{i}", files)
        sqid = await conn.fetchval("SELECT public_sqid FROM users WHERE id = $1", owner)
        ids.append(owner)
        tokens.append(mint_token(settings.jwt_secret_key, sqid, ttl_seconds=3 * 3600))
        posts.append(post_ids)
    await conn.execute("VACUUM ANALYZE")
    return Users(ids, tokens, posts)


def request_ids(posts: list[int], n: int) -> list[int]:
    """The n-th request's artworks: a different window of the user's posts each time."""
    return [posts[(n + k) % len(posts)] for k in range(ARTWORKS_PER_BDR)]


async def post_bdr(http: aiohttp.ClientSession, token: str, post_ids: list[int]) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post("/api/pmd/bdr", json={"post_ids": post_ids}, headers=headers) as resp:
        assert resp.status == 202, await resp.text()
        bdr_id: str = (await resp.json())["id"]
        return bdr_id


async def forget_bdrs(conn: asyncpg.Connection, settings: Settings) -> None:
    """Back to no BDRs (daily limits restart) and no events: every round starts alike."""
    await conn.execute("DELETE FROM batch_download_requests")
    await conn.execute("DELETE FROM bdr_events")
    await conn.execute("VACUUM ANALYZE batch_download_requests, bdr_events")
    await asyncio.to_thread(shutil.rmtree, settings.bdr_path, True)


async def start_workers(
    conn: asyncpg.Connection, env: dict[str, str], n: int
) -> list[subprocess.Popen[bytes]]:
    workers = [start_worker(env) for _ in range(n)]
    deadline = time.monotonic() + 60
    # Each worker opens its pool (one connection) in on_startup, just before it starts polling.
    while await conn.fetchval(SQL_WORKERS_UP) < n:
        if time.monotonic() > deadline:
            stop(*workers)
            raise RuntimeError(f"{n} workers did not start within 60 s")
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # their start-up sweep and first polls
    return workers


# --- 1. the backlog ------------------------------------------------------------------------


async def hold_backlog(redis: ArqRedis, backlog: int, within: float) -> None:
    """Once the servers have enqueued all `backlog` BDRs (each after its reply is written), the
    queue held aside until every worker is up: otherwise the first to start drains alone."""
    deadline = time.monotonic() + within
    while await redis.zcard(default_queue_name) < backlog:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the servers did not enqueue every BDR within {within:.0f} s")
        await asyncio.sleep(0.02)
    await redis.rename(default_queue_name, HELD_QUEUE)


async def drained(db: Any, redis: ArqRedis, backlog: int, limit: float,
                  ids: list[str] | None = None) -> float:  # fmt: skip
    """The held queue released; seconds until all `backlog` BDRs (`ids`, or every one) are
    ready. `db`: a connection or pool."""
    start = time.monotonic()
    await redis.rename(HELD_QUEUE, default_queue_name)
    while True:
        row = await db.fetchrow(SQL_DRAINED, ids)
        assert row is not None and row["other"] == 0, "a BDR failed or was cancelled"
        if row["ready"] == backlog:
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            raise RuntimeError(f"{row['ready']}/{backlog} ready after {limit:.0f} s")
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Rig:
    """What a drain runs against: the stack, its server and the seeded users."""

    conn: asyncpg.Connection
    redis: ArqRedis
    http: aiohttp.ClientSession
    settings: Settings
    env: dict[str, str]
    server_pid: int
    users: Users


async def drain(rig: Rig, backlog: int, n_workers: int) -> dict[str, Any]:
    conn, redis, http, settings, users = rig.conn, rig.redis, rig.http, rig.settings, rig.users
    env, server_pid = rig.env, rig.server_pid
    await forget_bdrs(conn, settings)
    per_user = -(-backlog // USERS)
    assert per_user <= 8, "the daily limit: more users needed"
    count = 0

    async def one_user(u: int, k: int) -> None:
        nonlocal count
        for r in range(k):
            await post_bdr(http, users.tokens[u], request_ids(users.posts[u], r))
            count += 1

    shares = [min(per_user, backlog - u * per_user) for u in range(USERS)]
    await asyncio.gather(*(one_user(u, k) for u, k in enumerate(shares) if k > 0))
    assert count == backlog
    await hold_backlog(redis, backlog, 10)
    workers = await start_workers(conn, env, n_workers)
    meter = CpuMeter(conn, redis, server_pid, [w.pid for w in workers])
    try:
        await meter.start()
        start = await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        await drained(conn, redis, backlog, DRAIN_LIMIT_S)
        cpu = await meter.stop()
    finally:
        stop(*workers)
    times = await conn.fetchrow(SQL_DRAIN_TIMES)
    assert times is not None
    seconds = times["last_done"] - start
    return {
        "workers": n_workers,
        "bdrs": backlog,
        "seconds": seconds,
        "per_s": backlog / seconds,
        "claim_ready_p50_ms": times["claim_ready_p50"] * 1000,
        "claim_ready_p90_ms": times["claim_ready_p90"] * 1000,
        "cpu": cpu,
    }


def cpu_line(r: dict[str, Any]) -> str:
    c, n = r["cpu"], r["bdrs"]
    wall = c["wall_s"]
    workers = "+".join(f"{x / wall:.2f}" for x in c["per_worker_s"])
    return (
        f"cores busy: workers {workers}, postgres {c['postgres_s'] / wall:.2f} "
        f"(+{c['pg_shared_s'] / wall:.2f} shared), server {c['server_s'] / wall:.2f}, "
        f"redis {c['redis_s'] / wall:.2f}, this bench {c['bench_s'] / wall:.2f}, other work "
        f"{c['others_s'] / wall:.2f}; machine {c['machine_busy_s'] / wall:.2f} of 2 "
        f"(iowait {c['machine_iowait_s'] / wall:.2f}); CPU per BDR: workers "
        f"{c['workers_s'] / n * 1000:.1f} ms, postgres {c['postgres_s'] / n * 1000:.1f} ms"
    )


async def backlog_curve(rig: Rig, backlog: int, repeats: int) -> dict[str, Any]:
    runs = []
    order = list(WORKER_COUNTS)
    for rep in range(repeats):
        # Alternating the order spreads slow drift of the machine's load over every count.
        for n in order if rep % 2 == 0 else reversed(order):
            r = await drain(rig, backlog, n)
            runs.append(r)
            print(f"  {n} worker(s): {r['bdrs']} BDRs in {r['seconds']:.2f} s = "
                  f"{r['per_s']:.1f}/s, claim → ready p50 {r['claim_ready_p50_ms']:.0f} ms; "
                  f"{cpu_line(r)}", flush=True)  # fmt: skip
    by_workers = []
    for n in WORKER_COUNTS:
        mine = [r for r in runs if r["workers"] == n]
        best = max(mine, key=lambda r: r["per_s"])
        by_workers.append(
            {
                "workers": n,
                "per_s": statistics.median(r["per_s"] for r in mine),
                "per_s_runs": [r["per_s"] for r in mine],
                "claim_ready_p50_ms": statistics.median(r["claim_ready_p50_ms"] for r in mine),
                "cpu": best["cpu"],  # of the fastest run: the capacity it reached
                "bdrs": backlog,
            }
        )
    return {"runs": runs, "by_workers": by_workers}


# --- 2. fifty users at once ------------------------------------------------------------------


async def watch_ready(
    http: aiohttp.ClientSession, token: str, seen: dict[str, float], up: asyncio.Future[None]
) -> None:
    """Follows one user's stream; records when each BDR's `ready` event arrives."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with http.get("/api/pmd/bdr/sse", headers=headers, timeout=timeout) as resp:
        assert resp.status == 200, resp.status
        live = False
        async for line in resp.content:
            if not live:
                # The snapshot (earlier BDRs) comes first: only live events count.
                if line.startswith(b"event: connected"):
                    live = True
                    up.set_result(None)
            elif line.startswith(b"data: "):
                item = json.loads(line[6:])
                if item.get("status") == "ready":
                    seen.setdefault(item["id"], time.perf_counter())


async def burst_latency(
    conn: asyncpg.Connection,
    http: aiohttp.ClientSession,
    settings: Settings,
    env: dict[str, str],
    users: Users,
    n_workers: int,
) -> dict[str, Any]:
    await forget_bdrs(conn, settings)
    workers = await start_workers(conn, env, n_workers)
    seen: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    ups = [loop.create_future() for _ in range(USERS)]
    streams = [
        asyncio.create_task(watch_ready(http, t, seen, up))
        for t, up in zip(users.tokens, ups, strict=True)
    ]
    samples: list[float] = []
    replies: list[float] = []  # POST → 202
    spans: list[float] = []  # a burst's first POST → its last ready
    try:
        await asyncio.wait_for(asyncio.gather(*ups), 30)
        for b in range(BURSTS + 1):  # the first burst warms the workers up
            sent: dict[str, float] = {}

            async def one(u: int, b: int = b, sent: dict[str, float] = sent) -> None:
                start = time.perf_counter()
                bdr_id = await post_bdr(http, users.tokens[u], request_ids(users.posts[u], b))
                sent[bdr_id] = start
                if b > 0:
                    replies.append(time.perf_counter() - start)

            await asyncio.gather(*(one(u) for u in range(USERS)))
            deadline = time.monotonic() + 60
            while not all(i in seen for i in sent):
                if time.monotonic() > deadline:
                    raise RuntimeError("a burst's BDRs were not all ready within 60 s")
                await asyncio.sleep(0.02)
            if b > 0:
                samples += [seen[i] - t for i, t in sent.items()]
                spans.append(max(seen[i] for i in sent) - min(sent.values()))
    finally:
        for s in streams:
            s.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        stop(*workers)
    ms = [x * 1000 for x in samples]
    return {
        "workers": n_workers,
        "users": USERS,
        "bursts": BURSTS,
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "min_ms": min(ms),
        "reply_p50_ms": percentile(replies, 0.5) * 1000,
        "reply_p99_ms": percentile(replies, 0.99) * 1000,
        "burst_s": statistics.median(spans),
        "samples_ms": ms,
    }


# --- 3. the events table -----------------------------------------------------------------------


async def seed_events(conn: asyncpg.Connection, rows: int, replayer: int, count: int) -> float:
    """The first `count` of `rows` events spread over EVENT_DAYS days up to now (ids in time
    order, REPLAYER_EVENTS of them the replaying user's, payloads copied from a real event): all of
    them, or only the older half that a cleanup purges, to refill the table after one. Returns
    the seconds the insert took."""
    payload = await conn.fetchval("SELECT payload::text FROM bdr_events ORDER BY id DESC LIMIT 1")
    started = time.perf_counter()
    every = max(2, rows // REPLAYER_EVENTS)
    await conn.execute(
        SQL_SEED_EVENTS, rows, uuid.uuid4(), replayer, every, 1_000_000,
        OTHER_EVENT_USERS, EVENT_DAYS * 86400.0, payload, count,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    await conn.execute("VACUUM ANALYZE bdr_events")
    return seconds


async def open_stream(
    http: aiohttp.ClientSession, token: str, last_event_id: int | None
) -> tuple[float, int, bool]:
    """(seconds to `event: connected`, bdr_update frames before it, whether it was reset)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    buf = bytearray()
    start = time.perf_counter()
    async with http.get("/api/pmd/bdr/sse", headers=headers) as resp:
        assert resp.status == 200, resp.status
        # Raw chunks, not lines: a client parsing 8,000 lines in Python would time itself.
        async for chunk in resp.content.iter_any():
            seen = max(0, len(buf) - len(CONNECTED))
            buf += chunk
            if buf.find(CONNECTED, seen) >= 0:
                seconds = time.perf_counter() - start
                resp.close()  # the connection too: the server frees the stream at once
                return seconds, buf.count(b"event: bdr_update"), b"event: reset" in buf
    raise RuntimeError("stream ended before `connected`")


async def replay_sql(conn: asyncpg.Connection, user: int, after: int) -> float:
    start = time.perf_counter()
    assert await conn.fetchval(SQL_EVENT_KNOWN, after)
    await conn.fetch(SQL_MISSED, user, after, MAX_REPLAY + 1)
    return time.perf_counter() - start


async def replays(
    conn: asyncpg.Connection, http: aiohttp.ClientSession, user: int, token: str
) -> dict[str, Any]:
    # For each N, the Last-Event-ID a client N events behind would send.
    starts: dict[int, int] = {}
    for n in REPLAYS:
        starts[n] = await conn.fetchval(
            "SELECT id FROM bdr_events WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1",
            user,
            n,
        )
        assert starts[n] is not None, f"the replaying user has fewer than {n} events"
    stream: dict[int | None, list[float]] = {n: [] for n in [None, *REPLAYS]}
    sql: dict[int, list[float]] = {n: [] for n in REPLAYS}
    frames: dict[int | None, tuple[int, bool]] = {}
    for _ in range(REPLAY_ROUNDS):
        for behind in [None, *REPLAYS]:
            last = None if behind is None else starts[behind]
            seconds, count, reset = await open_stream(http, token, last)
            stream[behind].append(seconds)
            frames[behind] = (count, reset)
            if behind is not None:
                sql[behind].append(await replay_sql(conn, user, starts[behind]))
    snapshot = statistics.median(stream[None]) * 1000
    print(f"  no Last-Event-ID (snapshot): {snapshot:.1f} ms to `connected`")
    out = []
    for n in REPLAYS:
        count, reset = frames[n]
        assert reset == (n > MAX_REPLAY) and (reset or count == n), (n, count, reset)
        row = {
            "missed": n,
            "frames": count,
            "reset": reset,
            "p50_ms": statistics.median(stream[n]) * 1000,
            "p90_ms": percentile(stream[n], 0.9) * 1000,
            "sql_p50_ms": statistics.median(sql[n]) * 1000,
        }
        out.append(row)
        what = "reset + snapshot" if reset else f"{count} events replayed"
        print(f"  {n:5d} missed: {row['p50_ms']:7.1f} ms to `connected` (p90 "
              f"{row['p90_ms']:.1f}), its SQL alone {row['sql_p50_ms']:.1f} ms; {what}")  # fmt: skip
    return {"snapshot_ms": snapshot, "replays": out}


async def probe_writes(
    conn: asyncpg.Connection, bdr_id: uuid.UUID, stop_at: asyncio.Event
) -> list[float]:
    """Event writes (a progress update through the trigger) every PROBE_EVERY_S, timed."""
    samples = []
    while not stop_at.is_set():
        start = time.perf_counter()
        await conn.execute(SQL_PROBE, bdr_id)
        samples.append(time.perf_counter() - start)
        await asyncio.sleep(PROBE_EVERY_S)
    return samples


async def probed(
    probe: asyncpg.Connection, bdr_id: uuid.UUID, work: Awaitable[T]
) -> tuple[T, float, list[float]]:
    """`work`'s result and seconds, and the event writes timed while it ran."""
    stop_at = asyncio.Event()
    task = asyncio.create_task(probe_writes(probe, bdr_id, stop_at))
    start = time.perf_counter()
    try:
        result = await work
    finally:
        seconds = time.perf_counter() - start
        stop_at.set()
        samples = await task
    return result, seconds, samples


def probe_figures(prefix: str, samples: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in samples]
    return {
        f"{prefix}_p50_ms": percentile(ms, 0.5),
        f"{prefix}_p99_ms": percentile(ms, 0.99),
        f"{prefix}_max_ms": max(ms),
    }


async def one_cleanup(
    settings: Settings, probe: asyncpg.Connection, bdr_id: uuid.UUID
) -> dict[str, Any]:
    async with job_context(settings) as ctx:
        pool = state(ctx).pool
        _, _, quiet = await probed(probe, bdr_id, asyncio.sleep(2.0))
        summary, seconds, during = await probed(probe, bdr_id, cleanup_expired_bdrs(ctx))
        # The deleted rows' space and index entries are reclaimed by the next (auto)vacuum:
        # part of the purge's cost, paid later.
        _, vacuum_s, vacuuming = await probed(probe, bdr_id, pool.execute("VACUUM bdr_events"))
        # With nothing due: what the cleanup costs on a day with no events to purge.
        start = time.perf_counter()
        await cleanup_expired_bdrs(ctx)
        idle_s = time.perf_counter() - start
    return {
        "purged": summary["events_purged"],
        "seconds": seconds,
        "vacuum_s": vacuum_s,
        "nothing_due_s": idle_s,
        **probe_figures("quiet", quiet),
        **probe_figures("purge", during),
        **probe_figures("vacuum", vacuuming),
    }


async def events_costs(
    conn: asyncpg.Connection,
    settings: Settings,
    env: dict[str, str],
    log: IO[bytes],
    users: Users,
    rows: int,
) -> dict[str, Any]:
    await forget_bdrs(conn, settings)
    replayer, token = users.ids[0], users.tokens[0]
    sqid = await conn.fetchval("SELECT public_sqid FROM users WHERE id = $1", replayer)
    bdr_id = await conn.fetchval(SQL_PROBE_ROW, replayer, sqid, users.posts[0][:ARTWORKS_PER_BDR])
    seed_s = await seed_events(conn, rows, replayer, rows)
    size = await conn.fetchval("SELECT pg_total_relation_size('bdr_events')")
    print(f"  {rows:,} events seeded in {seed_s:.1f} s; table with its indexes "
          f"{size / 1e6:.0f} MB")  # fmt: skip
    # A fresh server: its hub starts after the seeded events (it never reads them as new).
    port = free_port()
    # Streams opened one after another faster than the server notices each close: the
    # per-user cap (not measured here) would refuse some.
    env = {**env, "SSE_MAX_PER_USER": "1000"}
    server = await asyncio.to_thread(start_server, env, port, log)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await open_stream(http, token, None)  # warm-up: imports, the pool's connections
            figures = await replays(conn, http, replayer, token)
    finally:
        stop(server)
    cleanups = []
    for i in range(2):
        if i:  # the purged half again (the previous round vacuumed, as autovacuum would)
            await seed_events(conn, rows, replayer, rows // 2)
        before = await conn.fetchval("SELECT count(*) FROM bdr_events")
        c = {"rows_before": before, **await one_cleanup(settings, conn, bdr_id)}
        cleanups.append(c)
        print(f"  cleanup at {before:,} rows: {c['purged']:,} events purged in {c['seconds']:.2f} s "
              f"({c['purged'] / c['seconds']:,.0f}/s), then VACUUM {c['vacuum_s']:.2f} s; with "
              f"nothing due {c['nothing_due_s'] * 1000:.0f} ms. Event writes (p50/p99/max ms): "
              f"quiet {c['quiet_p50_ms']:.1f}/{c['quiet_p99_ms']:.1f}/{c['quiet_max_ms']:.1f}, "
              f"during the purge {c['purge_p50_ms']:.1f}/{c['purge_p99_ms']:.1f}/{c['purge_max_ms']:.1f}, "
              f"during VACUUM {c['vacuum_p50_ms']:.1f}/{c['vacuum_p99_ms']:.1f}/{c['vacuum_max_ms']:.1f}",
              flush=True)  # fmt: skip
    return {"rows": rows, "table_mb": size / 1e6, "seed_s": seed_s, **figures, "cleanups": cleanups}


# --- the run -----------------------------------------------------------------------------------


async def forget_jobs(redis: ArqRedis) -> None:
    """arq's keys left by an earlier run that died (its database is gone): its jobs would
    count in this run's backlog."""
    stale = [key async for key in redis.scan_iter(match="arq:*")]
    await redis.delete(HELD_QUEUE, *stale)


async def run(parts: set[str], backlog: int, repeats: int, events: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with fresh_stack() as settings:
        conn = await connect(settings.database_url, "pmd-bench")
        redis = create_redis(settings.redis_url)
        await forget_jobs(redis)
        env = service_env(settings)
        port = free_port()
        # Kept after the run (the temp dir is not): what the server said when a figure is odd.
        SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
        server_log = SERVER_LOG.open("wb")
        server = await asyncio.to_thread(start_server, env, port, server_log)
        try:
            users = await seed_users(conn, settings, settings.bdr_path.parent / "sources")
            figures["config"] = {
                "users": USERS,
                "artworks_per_bdr": ARTWORKS_PER_BDR,
                "synchronous_commit": await conn.fetchval("SHOW synchronous_commit"),
                "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
                # arq starts at most max_jobs jobs a poll (start_jobs stops at the first job
                # that does not fit): jobs shorter than a poll run at most this many a second.
                "max_jobs": MAX_JOBS,
                "poll_delay_s": POLL_DELAY,
                "poll_ceiling_per_worker": MAX_JOBS / POLL_DELAY,
                "cpus": len(os.sched_getaffinity(0)),
            }
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                if "backlog" in parts:
                    print(f"1. a backlog of {backlog} BDRs of {ARTWORKS_PER_BDR} small artworks "
                          f"({USERS} users), drained by fresh workers:", flush=True)  # fmt: skip
                    figures["backlog"] = await backlog_curve(
                        Rig(conn, redis, http, settings, env, server.pid, users), backlog, repeats
                    )
                if "burst" in parts:
                    print(f"2. {USERS} users POST one BDR each at once ({BURSTS} bursts), "
                          "POST → `ready` on their SSE streams:", flush=True)  # fmt: skip
                    figures["burst"] = []
                    for n in WORKER_COUNTS:
                        b = await burst_latency(conn, http, settings, env, users, n)
                        figures["burst"].append(b)
                        print(f"  {n} worker(s): p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms,"
                              f" max {b['max_ms']:.0f} ms, min {b['min_ms']:.0f} ms; the 202 replies p50 "
                              f"{b['reply_p50_ms']:.0f} ms, p99 {b['reply_p99_ms']:.0f} ms; all {USERS} ready "
                              f"{b['burst_s']:.2f} s after the first POST", flush=True)  # fmt: skip
            stop(server)
            if "events" in parts:
                print(f"3. bdr_events at {events:,} rows:", flush=True)
                figures["events"] = await events_costs(
                    conn, settings, env, server_log, users, events
                )
        finally:
            stop(server)
            server_log.close()
            await redis.aclose()
            await conn.close()
    if "backlog" in figures:
        rows = figures["backlog"]["by_workers"]
        one = rows[0]["per_s"]
        print("BDRs per second (median of runs): " + ", ".join(
            f"{r['workers']} → {r['per_s']:.1f} ({r['per_s'] / one:.2f}×)" for r in rows))  # fmt: skip
    return figures


def main() -> None:
    parser = cli.parser("scaling", __doc__)
    parser.add_argument("--backlog", type=int, default=300, help="BDRs per drain (≤ 8 a user)")
    parser.add_argument("--repeats", type=int, default=3, help="drains per worker count")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--parts", default="backlog,burst,events")
    args = parser.parse_args()
    figures = asyncio.run(run(set(args.parts.split(",")), args.backlog, args.repeats, args.events))
    cli.save(args.json, figures)


if __name__ == "__main__":
    main()

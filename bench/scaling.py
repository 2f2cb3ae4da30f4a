"""Scaling curves through the real processes: `python -m bench.scaling`.

One `python server.py` and fresh workers on a fresh database, driven over HTTP: (1) a backlog of
small BDRs POSTed while no worker runs and held aside (a Redis RENAME) until one fresh worker is
up, then drained, with every process's CPU; (2) USERS users POST a BDR each at once: POST →
`ready` on their SSE streams, with one worker; (3) `bdr_events` at `--events` rows:
Last-Event-ID replays, and `cleanup_expired_bdrs` against event writes meanwhile; (4) NOTIFY
fan-out to 1 … 50 listening connections. Prints figures, exits 0. arq's keys in REDIS_URL's
database are deleted first.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any, TypeVar

import aiohttp
import asyncpg
from arq.connections import ArqRedis
from arq.constants import default_queue_name

from bench import cli
from bench.build import make_small_pixel_art, seed_user
from pmd_service.core.db import connect
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.host.tokens import mint_token
from pmd_service.jobs.context import job_context, state
from pmd_service.sse.replay import MAX_REPLAY, SQL_EVENT_KNOWN, SQL_MISSED
from pmd_service.upkeep.cleanup import cleanup_expired_bdrs
from pmd_service.worker import MAX_JOBS, POLL_DELAY
from support import seeding, stack
from support.measures import cpu_seconds, machine_seconds, percentile
from support.stack import free_port, start_server, start_worker, stop

USERS = 50
ARTWORKS_PER_USER = 8
ARTWORKS_PER_BDR = 4
DRAIN_LIMIT_S = 180.0
HELD_QUEUE = "pmd-bench:held-queue"
BURSTS = 3
EVENT_DAYS = 2  # events kept 1 day and purged daily: just before a cleanup the table holds ~2
OTHER_EVENT_USERS = 10_000
REPLAYS = (10, 100, 1000, MAX_REPLAY, MAX_REPLAY + 1000)
# The replaying user's events: twice the longest replay, spread evenly through the table.
REPLAYER_EVENTS = 2 * max(REPLAYS)
REPLAY_ROUNDS = 15
PROBE_EVERY_S = 0.01
# Listening connections (one a server process); a default max_connections (100) holds them all.
LISTENERS = (1, 10, 25, 50)
NOTIFIES = 150
T = TypeVar("T")
CONNECTED = b"event: connected"
SERVER_LOG = stack.CHECKOUT / ".data" / "bench" / "scaling-server.log"

SQL_OUR_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
# The WAL writer, checkpointer and background writer serve every database on the server (the
# other sessions' too), so they are reported apart from this database's backends.
SQL_SHARED_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname IS NULL"
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
SQL_PROBE = "UPDATE batch_download_requests SET progress_done = progress_done + 1 WHERE id = $1"
SQL_SQID = "SELECT public_sqid FROM users WHERE id = $1"


async def until(ready: Callable[[], Any], within: float, what: str) -> None:
    """Polls `ready()` (awaited when it gives an awaitable) until it is true."""
    deadline = time.monotonic() + within
    while not (await got if inspect.isawaitable(got := ready()) else got):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(0.05)


def window(posts: list[int], n: int) -> list[int]:
    """The n-th request's artworks: a different window of the user's posts each time."""
    return [posts[(n + k) % len(posts)] for k in range(ARTWORKS_PER_BDR)]


async def post_bdr(http: aiohttp.ClientSession, auth: dict[str, str], post_ids: list[int]) -> str:
    async with http.post("/api/pmd/bdr", json={"post_ids": post_ids}, headers=auth) as r:
        assert r.status == 202, (r.status, await r.text())
        bdr_id: str = (await r.json())["id"]
        return bdr_id


@dataclass
class Local:
    """The service on this machine: the server at `http`'s base URL, the seeded users (auth
    header, their posts; ids and tokens), the database, Redis, and the running worker's pid."""

    http: aiohttp.ClientSession
    users: list[tuple[dict[str, str], list[int]]]
    db: Any  # an asyncpg connection
    redis: ArqRedis
    settings: Settings
    env: dict[str, str]
    server: int
    ids: list[int]
    tokens: list[str]
    worker_pid: int = 0

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[None]:
        proc = start_worker(self.env)
        try:
            # It opens its pool (one connection) in on_startup, just before it starts polling.
            await until(lambda: self.db.fetchval(SQL_WORKER_UP), 60, "a worker up")
            await asyncio.sleep(1.0)  # its start-up sweep and first polls
            self.worker_pid = proc.pid
            yield
        finally:
            stop(proc)

    async def parties(self) -> dict[str, dict[Any, float]]:
        info = await self.redis.info("cpu")
        return {
            "worker": {self.worker_pid: cpu_seconds(self.worker_pid)},
            "server": {self.server: cpu_seconds(self.server)},
            **{name: {r["pid"]: cpu_seconds(r["pid"]) for r in await self.db.fetch(sql)}
               for name, sql in (("postgres", SQL_OUR_BACKENDS), ("pg_shared", SQL_SHARED_BACKENDS))},
            "redis": {"info": float(info["used_cpu_user"]) + float(info["used_cpu_sys"])},
        }  # fmt: skip

    async def metered(self, work: Awaitable[T]) -> tuple[T, dict[str, float]]:
        """`work`'s result, and the CPU seconds each party, this process ("bench") and the
        machine spent meanwhile; "others": the rest of the machine's busy time."""

        async def sample() -> tuple[dict[str, dict[Any, float]], dict[str, float]]:
            own = {"bench": sum(os.times()[:2]), "machine_busy": machine_seconds()}
            return await self.parties(), own | {"wall": time.monotonic()}

        parties, own = await sample()
        result = await work
        parties_after, own_after = await sample()
        # A process that started meanwhile started at 0 CPU.
        spent = {party: sum(cpu - parties.get(party, {}).get(key, 0.0) for key, cpu in now.items())
                 for party, now in parties_after.items()}  # fmt: skip
        spent |= {k: v - own[k] for k, v in own_after.items()}
        ours = sum(v for k, v in spent.items() if k not in ("machine_busy", "wall"))
        spent["others"] = max(0.0, spent["machine_busy"] - ours)
        return result, {k: round(v, 3) for k, v in spent.items()}

    async def forget_bdrs(self) -> None:
        """Back to no BDRs (daily limits restart) and no events: every round starts alike."""
        await self.db.execute("DELETE FROM batch_download_requests; DELETE FROM bdr_events")
        await self.db.execute("VACUUM ANALYZE batch_download_requests, bdr_events")
        await asyncio.to_thread(shutil.rmtree, self.settings.bdr_path, True)


async def timed(work: Awaitable[T]) -> tuple[T, float]:
    start = time.perf_counter()
    return await work, time.perf_counter() - start


# --- 1. the backlog ------------------------------------------------------------------------


async def drain(rig: Local, backlog: int) -> dict[str, Any]:
    """`backlog` BDRs POSTed (spread evenly over the users), held, then drained by one fresh
    worker: seconds from the release to the last ready (the database's clock), claim → ready,
    and the CPU of every party."""
    share = -(-backlog // len(rig.users))

    async def post(user: tuple[dict[str, str], list[int]], k: int) -> list[str]:
        return [await post_bdr(rig.http, user[0], window(user[1], r)) for r in range(k)]

    async def queued() -> bool:
        return bool(await rig.redis.zcard(default_queue_name) >= backlog)

    async def ready() -> bool:
        row = await rig.db.fetchrow(SQL_DRAINED, ids)
        assert row["other"] == 0, "a BDR failed or was cancelled"
        return bool(row["ready"] == len(ids))

    async def released() -> None:
        await rig.redis.rename(HELD_QUEUE, default_queue_name)
        await until(ready, DRAIN_LIMIT_S, "the drain")

    posted = await asyncio.gather(*(post(u, min(share, backlog - i * share))
                                    for i, u in enumerate(rig.users)))  # fmt: skip
    ids = [i for mine in posted for i in mine]
    # Each is enqueued after its reply is written: held once every one is in the queue.
    await until(queued, 30, f"{backlog} BDRs enqueued")
    await rig.redis.rename(default_queue_name, HELD_QUEUE)
    async with rig.worker():
        start = await rig.db.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        _, cpu = await rig.metered(released())
    times = await rig.db.fetchrow(SQL_DRAIN_TIMES, ids)
    seconds = times["last_done"] - start
    return {"bdrs": backlog, "seconds": round(seconds, 3), "per_s": round(backlog / seconds, 2),
            "claim_ready_p50_ms": times["claim_ready_p50"] * 1000,
            "cpu": {f"{k}_s": v for k, v in cpu.items()}}  # fmt: skip


async def backlog_drains(rig: Local, backlog: int, repeats: int) -> dict[str, Any]:
    """`repeats` drains by one worker: the median rate, and the CPU of the fastest (the
    capacity it reached)."""
    assert -(-backlog // USERS) <= 8, "the daily limit: more users needed"
    runs = []
    for _ in range(repeats):
        await rig.forget_bdrs()
        runs.append(await drain(rig, backlog))
        cli.show("  one worker", runs[-1])
    return {"bdrs": backlog, "per_s": statistics.median(r["per_s"] for r in runs),
            "per_s_runs": [r["per_s"] for r in runs],
            "claim_ready_p50_ms": statistics.median(r["claim_ready_p50_ms"] for r in runs),
            "cpu": max(runs, key=lambda r: r["per_s"])["cpu"]}  # fmt: skip


# --- 2. fifty users at once ------------------------------------------------------------------


async def watch_ready(
    http: aiohttp.ClientSession, token: str, seen: dict[str, float], up: asyncio.Future[None]
) -> None:
    """Follows one user's stream; records when each BDR's `ready` event arrives."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with http.get("/api/pmd/bdr/sse", headers=headers, timeout=timeout) as resp:
        assert resp.status == 200, resp.status
        async for line in resp.content:
            # The snapshot (earlier BDRs) comes first: only live events count.
            if line.startswith(CONNECTED):
                up.set_result(None)
            elif up.done() and line.startswith(b"data: "):
                item = json.loads(line[6:])
                if item.get("status") == "ready":
                    seen.setdefault(item["id"], time.perf_counter())


async def burst_latency(rig: Local) -> dict[str, Any]:
    await rig.forget_bdrs()
    seen: dict[str, float] = {}
    ups = [asyncio.get_running_loop().create_future() for _ in rig.tokens]
    samples: list[float] = []
    replies: list[float] = []  # POST → 202
    spans: list[float] = []  # a burst's first POST → its last ready

    async def post(user: tuple[dict[str, str], list[int]], b: int, sent: dict[str, float]) -> None:
        start = time.perf_counter()
        sent[await post_bdr(rig.http, user[0], window(user[1], b))] = start
        if b > 0:
            replies.append(time.perf_counter() - start)

    async with rig.worker():
        streams = [asyncio.create_task(watch_ready(rig.http, t, seen, up))
                   for t, up in zip(rig.tokens, ups, strict=True)]  # fmt: skip
        try:
            await asyncio.wait_for(asyncio.gather(*ups), 30)
            for b in range(BURSTS + 1):  # the first burst warms the workers up
                sent: dict[str, float] = {}
                await asyncio.gather(*(post(u, b, sent) for u in rig.users))
                await until(lambda: sent.keys() <= seen.keys(), 60, "a burst")  # noqa: B023
                if b > 0:
                    samples += [seen[i] - t for i, t in sent.items()]
                    spans.append(max(seen[i] for i in sent) - min(sent.values()))
        finally:
            for s in streams:
                s.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
    ms = [x * 1000 for x in samples]
    out = {"p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99),
           "max_ms": max(ms), "reply_p50_ms": percentile(replies, 0.5) * 1000,
           "reply_p99_ms": percentile(replies, 0.99) * 1000,
           "burst_s": statistics.median(spans)}  # fmt: skip
    cli.show("  one worker", out)
    return out


# --- 3. the events table -----------------------------------------------------------------------


async def seed_events(conn: asyncpg.Connection, rows: int, replayer: int, count: int) -> None:
    """The first `count` of `rows` events over EVENT_DAYS days up to now (REPLAYER_EVENTS of
    them the replayer's, payloads copied from a real event): all, or the older half a cleanup
    purges."""
    payload = await conn.fetchval("SELECT payload::text FROM bdr_events ORDER BY id DESC LIMIT 1")
    every = max(2, rows // REPLAYER_EVENTS)
    await seeding.bulk_events(
        conn, rows, count, replayer, every, OTHER_EVENT_USERS, EVENT_DAYS * 86400.0, payload
    )
    await conn.execute("VACUUM ANALYZE bdr_events")


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


async def replays(
    conn: asyncpg.Connection, http: aiohttp.ClientSession, user: int, token: str
) -> dict[str, Any]:
    # For each N, the Last-Event-ID a client N events behind would send.
    starts: dict[int, int] = {n: await conn.fetchval(
        "SELECT id FROM bdr_events WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1", user, n
    ) for n in REPLAYS}  # fmt: skip
    assert None not in starts.values(), "the replaying user has too few events"
    stream: dict[int | None, list[float]] = {n: [] for n in [None, *REPLAYS]}
    sql: dict[int, list[float]] = {n: [] for n in REPLAYS}
    frames: dict[int | None, tuple[int, bool]] = {}
    for _ in range(REPLAY_ROUNDS):
        for behind in [None, *REPLAYS]:
            last = None if behind is None else starts[behind]
            seconds, count, reset = await open_stream(http, token, last)
            stream[behind].append(seconds)
            frames[behind] = (count, reset)
            if behind is not None:  # the replay's SQL alone
                start = time.perf_counter()
                assert await conn.fetchval(SQL_EVENT_KNOWN, last)
                await conn.fetch(SQL_MISSED, user, last, MAX_REPLAY + 1)
                sql[behind].append(time.perf_counter() - start)
    snapshot = statistics.median(stream[None]) * 1000
    cli.show("  no Last-Event-ID", {"snapshot_ms": snapshot})
    out = []
    for n in REPLAYS:
        count, reset = frames[n]
        assert reset == (n > MAX_REPLAY) and (reset or count == n), (n, count, reset)
        out.append({"missed": n, "frames": count, "reset": reset,
                    "p50_ms": statistics.median(stream[n]) * 1000,
                    "p90_ms": percentile(stream[n], 0.9) * 1000,
                    "sql_p50_ms": statistics.median(sql[n]) * 1000})  # fmt: skip
        cli.show(f"  {n} missed", out[-1])
    return {"snapshot_ms": snapshot, "replays": out}


async def probed(
    probe: asyncpg.Connection, bdr_id: uuid.UUID, name: str, work: Awaitable[T]
) -> tuple[T, float, dict[str, float]]:
    """`work`'s result and seconds, and the event writes (a progress update through the
    trigger, one every PROBE_EVERY_S) timed while it ran: `name`_p50_ms, _p99_ms and _max_ms."""
    stop_at, ms = asyncio.Event(), []

    async def writes() -> None:
        while not stop_at.is_set():
            start = time.perf_counter()
            await probe.execute(SQL_PROBE, bdr_id)
            ms.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(PROBE_EVERY_S)

    task = asyncio.create_task(writes())
    try:
        result, seconds = await timed(work)
    finally:
        stop_at.set()
        await task
    return result, seconds, {f"{name}_p50_ms": percentile(ms, 0.5),
                             f"{name}_p99_ms": percentile(ms, 0.99), f"{name}_max_ms": max(ms)}  # fmt: skip


async def one_cleanup(
    settings: Settings, probe: asyncpg.Connection, bdr_id: uuid.UUID
) -> dict[str, Any]:
    async with job_context(settings) as ctx:
        _, _, quiet = await probed(probe, bdr_id, "quiet", asyncio.sleep(2.0))
        summary, seconds, purge = await probed(probe, bdr_id, "purge", cleanup_expired_bdrs(ctx))
        # The deleted rows' space and index entries are reclaimed by the next (auto)vacuum:
        # part of the purge's cost, paid later.
        vacuum = state(ctx).pool.execute("VACUUM bdr_events")
        _, vacuum_s, vacuuming = await probed(probe, bdr_id, "vacuum", vacuum)
        # With nothing due: what the cleanup costs on a day with no events to purge.
        _, idle_s = await timed(cleanup_expired_bdrs(ctx))
    return {"purged": summary["events_purged"], "seconds": seconds, "vacuum_s": vacuum_s,
            "nothing_due_s": idle_s, **quiet, **purge, **vacuuming}  # fmt: skip


async def events_costs(rig: Local, log: IO[bytes], rows: int) -> dict[str, Any]:
    await rig.forget_bdrs()
    conn, replayer, token = rig.db, rig.ids[0], rig.tokens[0]
    # The probe row: its progress updates are event writes (the trigger appends and notifies),
    # and its insert's event, a ready row's, is the payload the seeded events copy.
    now, sqid = datetime.now(UTC), await conn.fetchval(SQL_SQID, replayer)
    bdr_id = await seeding.bdr_row(
        conn, replayer, rig.users[0][1][:ARTWORKS_PER_BDR], user_sqid=sqid, status="ready",
        started_at=now, completed_at=now, expires_at=now + timedelta(days=7), attempts=1,
        file_path="bdr/x/pmd-x.zip", file_size_bytes=123456, file_sha256="a" * 64,
    )  # fmt: skip
    await seed_events(conn, rows, replayer, rows)
    size = await conn.fetchval("SELECT pg_total_relation_size('bdr_events')")
    cli.show(f"  {rows:,} events", {"table_mb": size / 1e6})
    # A fresh server: its hub starts after the seeded events (it never reads them as new). Streams
    # open one after another faster than it notices each close: the per-user cap would refuse some.
    port = free_port()
    server = await asyncio.to_thread(start_server, {**rig.env, "SSE_MAX_PER_USER": "1000"}, port,
                                     log)  # fmt: skip
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
        cleanups.append({"rows_before": before, **await one_cleanup(rig.settings, conn, bdr_id)})
        cli.show("  a cleanup", cleanups[-1])
    return {"rows": rows, "table_mb": size / 1e6, **figures, "cleanups": cleanups}


# --- 4. NOTIFY fan-out --------------------------------------------------------------------------


async def notify_fanout(dsn: str, listeners: int) -> dict[str, Any]:
    """NOTIFIES doorbells, one at a time, to `listeners` LISTEN connections (each server process
    holds one): commit → receipt at the first and the last listener, and the CPU per NOTIFY of
    the database's backends (the listeners' and the notifier's) and of this process."""
    got: dict[str, list[float]] = {}
    done: dict[str, asyncio.Event] = {}

    def heard(_c: Any, _pid: int, _channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        got[payload].append(time.monotonic())
        if len(got[payload]) == listeners:
            done[payload].set()

    conns = [await asyncpg.connect(dsn) for _ in range(listeners + 1)]
    backends, notifier, first, last = [c.get_server_pid() for c in conns], conns[-1], [], []

    def cpu() -> tuple[float, float]:
        return sum(cpu_seconds(pid) for pid in backends), sum(os.times()[:2])

    try:
        for c in conns[:-1]:
            await c.add_listener("pmd_bench_notify", heard)
        db, client = cpu()
        for key in map(str, range(NOTIFIES)):
            got[key], done[key] = [], asyncio.Event()
            t = time.monotonic()
            await notifier.execute("SELECT pg_notify('pmd_bench_notify', $1)", key)
            await asyncio.wait_for(done[key].wait(), 10)
            first.append(got[key][0] - t)
            last.append(got[key][-1] - t)
            await asyncio.sleep(0.02)
        db, client = (after - before for after, before in zip(cpu(), (db, client), strict=True))
    finally:
        for c in conns:
            await c.close()
    figures = {"listeners": listeners, "first_p50_ms": statistics.median(first) * 1000,
               "all_p50_ms": statistics.median(last) * 1000,
               "all_p99_ms": percentile(last, 0.99) * 1000,
               "db_cpu_ms_per_notify": db * 1000 / NOTIFIES,
               "client_cpu_ms_per_notify": client * 1000 / NOTIFIES}  # fmt: skip
    cli.show(f"  NOTIFY to {listeners} listeners", figures)
    return figures


# --- the run -----------------------------------------------------------------------------------


async def seed_users(conn: asyncpg.Connection, settings: Settings) -> tuple[list[int], list[str],
                                                                             list[Any]]:  # fmt: skip
    """USERS users of ARTWORKS_PER_USER artworks: their ids, tokens, (auth header, posts)."""
    files = make_small_pixel_art(settings.bdr_path.parent / "sources", ARTWORKS_PER_USER)
    ids, tokens, users = [], [], []
    for i in range(USERS):
        owner, post_ids = await seed_user(conn, settings, f"scale{i}", files)
        sqid = await conn.fetchval(SQL_SQID, owner)
        ids.append(owner)
        tokens.append(mint_token(settings.jwt_secret_key, sqid, ttl_seconds=3 * 3600))
        users.append(({"Authorization": f"Bearer {tokens[-1]}"}, post_ids))
    await conn.execute("VACUUM ANALYZE")
    return ids, tokens, users


async def run(backlog: int, repeats: int, events: int) -> dict[str, Any]:
    async with stack.fresh_stack() as settings:
        conn = await connect(settings.database_url, "pmd-bench")
        redis = create_redis(settings.redis_url)
        # arq's keys of an earlier run that died: its jobs would count in this run's backlog.
        await redis.delete(HELD_QUEUE, *[key async for key in redis.scan_iter(match="arq:*")])
        env, port = stack.service_env(settings), free_port()
        # Kept after the run (the temp dir is not): what the server said when a figure is odd.
        SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
        log = SERVER_LOG.open("wb")
        server = await asyncio.to_thread(start_server, env, port, log)
        try:
            ids, tokens, users = await seed_users(conn, settings)
            # arq starts at most max_jobs jobs a poll (start_jobs stops at the first job that does
            # not fit): jobs shorter than a poll run at most max_jobs / poll_delay a second.
            figures: dict[str, Any] = {"config": {
                "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
                "poll_ceiling_per_worker": MAX_JOBS / POLL_DELAY,
                "cpus": len(os.sched_getaffinity(0))}}  # fmt: skip
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                rig = Local(http, users, conn, redis, settings, env, server.pid, ids, tokens)
                print(f"1. a backlog of {backlog} BDRs of {ARTWORKS_PER_BDR} small artworks "
                      f"({USERS} users), drained by a fresh worker:", flush=True)  # fmt: skip
                figures["backlog"] = await backlog_drains(rig, backlog, repeats)
                print(f"2. {USERS} users POST one BDR each at once ({BURSTS} bursts), "
                      "POST → `ready` on their SSE streams:", flush=True)  # fmt: skip
                figures["burst"] = await burst_latency(rig)
            stop(server)
            print(f"3. bdr_events at {events:,} rows:", flush=True)
            figures["events"] = await events_costs(rig, log, events)
            print(f"4. NOTIFY fan-out, {NOTIFIES} doorbells to each number of listeners:")
            figures["notify"] = [await notify_fanout(settings.database_url, n) for n in LISTENERS]
        finally:
            stop(server)
            log.close()
            await redis.aclose()
            await conn.close()
    print(f"BDRs per second, one worker (median of runs): {figures['backlog']['per_s']:.1f}")
    return figures


def main() -> None:
    parser = cli.parser("scaling", __doc__)
    parser.add_argument("--backlog", type=int, default=300, help="BDRs per drain (≤ 8 a user)")
    parser.add_argument("--repeats", type=int, default=3, help="drains by one worker")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    cli.save(args.json, asyncio.run(run(args.backlog, args.repeats, args.events)))


if __name__ == "__main__":
    main()

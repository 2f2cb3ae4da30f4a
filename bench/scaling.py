"""Scaling curves through the real processes: `python -m bench.scaling`.

One `python server.py` and 1, 2 or 4 workers on a fresh database, driven over HTTP: (1) a backlog
of small BDRs drained by fresh workers (bench/drain.py), with every process's CPU; (2) USERS users
POST a BDR each at once: POST → `ready` on their SSE streams; (3) `bdr_events` at `--events`
rows: Last-Event-ID replays, and `cleanup_expired_bdrs` against event writes meanwhile.
Prints figures, exits 0. arq's keys in REDIS_URL's database are deleted first.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
import asyncpg

from bench import cli, plots
from bench.drain import ARTWORKS_PER_BDR, HELD_QUEUE, Rig, drain, post_bdr, until, window
from bench.job import seed_user
from bench.show import show
from bench.zip import make_small_pixel_art
from pmd_service.core.db import connect
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.host.tokens import mint_token
from pmd_service.jobs.context import job_context, state
from pmd_service.sse.replay import MAX_REPLAY, SQL_EVENT_KNOWN, SQL_MISSED
from pmd_service.upkeep.cleanup import cleanup_expired_bdrs
from pmd_service.worker import MAX_JOBS, POLL_DELAY
from support import stack
from support.measures import cpu_seconds, percentile
from support.stack import free_port, start_server, start_worker, stop

USERS = 50
ARTWORKS_PER_USER = 8
WORKER_COUNTS = (1, 2, 4)
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
SERVER_LOG = stack.CHECKOUT / ".data" / "bench" / "scaling-server.log"
# The meter's names as this benchmark's figures (and the page rendered from them) have them.
CPU_NAMES = {"client": "bench", "machine": "machine_busy", "iowait": "machine_iowait"}

SQL_OUR_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
# The WAL writer, checkpointer and background writer serve every database on the server (the
# other sessions' too), so they are reported apart from this database's backends.
SQL_SHARED_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname IS NULL"
SQL_WORKERS_UP = """
SELECT count(*) >= $1 FROM pg_stat_activity
WHERE application_name = 'pmd-worker' AND datname = current_database()
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
SQL_SQID = "SELECT public_sqid FROM users WHERE id = $1"


@dataclass
class Local(Rig):
    """The drain's rig on this machine, with the seeded users' ids and tokens, and the
    processes that take part (the running workers' pids)."""

    settings: Settings
    env: dict[str, str]
    server: int
    ids: list[int]
    tokens: list[str]
    pids: list[int] = field(default_factory=list)

    @asynccontextmanager
    async def workers(self, n: int) -> AsyncIterator[None]:
        procs = [start_worker(self.env) for _ in range(n)]
        try:
            # Each opens its pool (one connection) in on_startup, just before it starts polling.
            await until(lambda: self.db.fetchval(SQL_WORKERS_UP, n), 60, f"{n} workers up")
            await asyncio.sleep(1.0)  # their start-up sweep and first polls
            self.pids = [p.pid for p in procs]
            yield
        finally:
            stop(*procs)

    async def parties(self) -> dict[str, dict[Any, float]]:
        info = await self.redis.info("cpu")
        return {
            **{f"worker{i}": {p: cpu_seconds(p)} for i, p in enumerate(self.pids)},
            "server": {self.server: cpu_seconds(self.server)},
            **{name: {r["pid"]: cpu_seconds(r["pid"]) for r in await self.db.fetch(sql)}
               for name, sql in (("postgres", SQL_OUR_BACKENDS), ("pg_shared", SQL_SHARED_BACKENDS))},
            "redis": {"info": float(info["used_cpu_user"]) + float(info["used_cpu_sys"])},
        }  # fmt: skip

    async def forget_bdrs(self) -> None:
        """Back to no BDRs (daily limits restart) and no events: every round starts alike."""
        await self.db.execute("DELETE FROM batch_download_requests; DELETE FROM bdr_events")
        await self.db.execute("VACUUM ANALYZE batch_download_requests, bdr_events")
        await asyncio.to_thread(shutil.rmtree, self.settings.bdr_path, True)


async def timed(work: Awaitable[T]) -> tuple[T, float]:
    start = time.perf_counter()
    return await work, time.perf_counter() - start


# --- 1. the backlog ------------------------------------------------------------------------


async def backlog_curve(rig: Local, backlog: int, repeats: int) -> dict[str, Any]:
    assert -(-backlog // USERS) <= 8, "the daily limit: more users needed"
    runs = []
    for rep in range(repeats):
        # Alternating the order spreads slow drift of the machine's load over every count.
        for n in WORKER_COUNTS if rep % 2 == 0 else reversed(WORKER_COUNTS):
            await rig.forget_bdrs()
            r = await drain(rig, backlog, n, DRAIN_LIMIT_S)
            del r["redis_commands"], r["cpu"]["box_busy"]
            per_worker = [r["cpu"].pop(f"worker{i}") for i in range(n)]
            r["cpu"] = {f"{CPU_NAMES.get(k, k)}_s": v for k, v in r["cpu"].items()} | {
                "per_worker_s": per_worker, "workers_s": sum(per_worker)}  # fmt: skip
            runs.append(r)
            show(f"  {n} worker(s)", r)
    by_workers = []
    for n in WORKER_COUNTS:
        mine = [r for r in runs if r["workers"] == n]
        # The CPU of the fastest run: the capacity it reached.
        by_workers.append({
            "workers": n, "per_s": statistics.median(r["per_s"] for r in mine),
            "per_s_runs": [r["per_s"] for r in mine],
            "claim_ready_p50_ms": statistics.median(r["claim_ready_p50_ms"] for r in mine),
            "cpu": max(mine, key=lambda r: r["per_s"])["cpu"], "bdrs": backlog})  # fmt: skip
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
        async for line in resp.content:
            # The snapshot (earlier BDRs) comes first: only live events count.
            if line.startswith(CONNECTED):
                up.set_result(None)
            elif up.done() and line.startswith(b"data: "):
                item = json.loads(line[6:])
                if item.get("status") == "ready":
                    seen.setdefault(item["id"], time.perf_counter())


async def burst_latency(rig: Local, n_workers: int) -> dict[str, Any]:
    await rig.forget_bdrs()
    seen: dict[str, float] = {}
    ups = [asyncio.get_running_loop().create_future() for _ in rig.tokens]
    samples: list[float] = []
    replies: list[float] = []  # POST → 202
    spans: list[float] = []  # a burst's first POST → its last ready

    async def post(user: tuple[dict[str, str], list[int]], b: int, sent: dict[str, float]) -> None:
        start = time.perf_counter()
        sent[await post_bdr(rig.http, "", user[0], window(user[1], b))] = start
        if b > 0:
            replies.append(time.perf_counter() - start)

    async with rig.workers(n_workers):
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
    out = {"workers": n_workers, "users": USERS, "bursts": BURSTS,
           "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99),
           "max_ms": max(ms), "min_ms": min(ms),
           "reply_p50_ms": percentile(replies, 0.5) * 1000,
           "reply_p99_ms": percentile(replies, 0.99) * 1000,
           "burst_s": statistics.median(spans), "samples_ms": ms}  # fmt: skip
    show(f"  {n_workers} worker(s)", out)
    return out


# --- 3. the events table -----------------------------------------------------------------------


async def seed_events(conn: asyncpg.Connection, rows: int, replayer: int, count: int) -> float:
    """The first `count` of `rows` events over EVENT_DAYS days up to now (REPLAYER_EVENTS of
    them the replayer's, payloads copied from a real event): all, or the older half a cleanup
    purges. Returns the insert's seconds."""
    payload = await conn.fetchval("SELECT payload::text FROM bdr_events ORDER BY id DESC LIMIT 1")
    every = max(2, rows // REPLAYER_EVENTS)
    _, seconds = await timed(conn.execute(
        SQL_SEED_EVENTS, rows, uuid.uuid4(), replayer, every, 1_000_000,
        OTHER_EVENT_USERS, EVENT_DAYS * 86400.0, payload, count))  # fmt: skip
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
    show("  no Last-Event-ID", {"snapshot_ms": snapshot})
    out = []
    for n in REPLAYS:
        count, reset = frames[n]
        assert reset == (n > MAX_REPLAY) and (reset or count == n), (n, count, reset)
        out.append({"missed": n, "frames": count, "reset": reset,
                    "p50_ms": statistics.median(stream[n]) * 1000,
                    "p90_ms": percentile(stream[n], 0.9) * 1000,
                    "sql_p50_ms": statistics.median(sql[n]) * 1000})  # fmt: skip
        show(f"  {n} missed", out[-1])
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
    sqid = await conn.fetchval(SQL_SQID, replayer)
    bdr_id = await conn.fetchval(SQL_PROBE_ROW, replayer, sqid, rig.users[0][1][:ARTWORKS_PER_BDR])
    seed_s = await seed_events(conn, rows, replayer, rows)
    size = await conn.fetchval("SELECT pg_total_relation_size('bdr_events')")
    show(f"  {rows:,} events", {"seed_s": seed_s, "table_mb": size / 1e6})
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
        show("  a cleanup", cleanups[-1])
    return {"rows": rows, "table_mb": size / 1e6, "seed_s": seed_s, **figures, "cleanups": cleanups}


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
            sync, buffers = [await conn.fetchval(f"SHOW {k}") for k in ("synchronous_commit",
                                                                         "shared_buffers")]  # fmt: skip
            # arq starts at most max_jobs jobs a poll (start_jobs stops at the first job that does
            # not fit): jobs shorter than a poll run at most max_jobs / poll_delay a second.
            figures: dict[str, Any] = {"config": {
                "users": USERS, "artworks_per_bdr": ARTWORKS_PER_BDR, "synchronous_commit": sync,
                "shared_buffers": buffers, "max_jobs": MAX_JOBS, "poll_delay_s": POLL_DELAY,
                "poll_ceiling_per_worker": MAX_JOBS / POLL_DELAY,
                "cpus": len(os.sched_getaffinity(0))}}  # fmt: skip
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                rig = Local(http, "", users, conn, redis, settings, env, server.pid, ids, tokens)
                print(f"1. a backlog of {backlog} BDRs of {ARTWORKS_PER_BDR} small artworks "
                      f"({USERS} users), drained by fresh workers:", flush=True)  # fmt: skip
                figures["backlog"] = await backlog_curve(rig, backlog, repeats)
                print(f"2. {USERS} users POST one BDR each at once ({BURSTS} bursts), "
                      "POST → `ready` on their SSE streams:", flush=True)  # fmt: skip
                figures["burst"] = [await burst_latency(rig, n) for n in WORKER_COUNTS]
            stop(server)
            print(f"3. bdr_events at {events:,} rows:", flush=True)
            figures["events"] = await events_costs(rig, log, events)
        finally:
            stop(server)
            log.close()
            await redis.aclose()
            await conn.close()
    rows = figures["backlog"]["by_workers"]
    print("BDRs per second (median of runs): " + ", ".join(
        f"{r['workers']} → {r['per_s']:.1f} ({r['per_s'] / rows[0]['per_s']:.2f}×)"
        for r in rows))  # fmt: skip
    return figures


def main() -> None:
    parser = cli.parser("scaling", __doc__)
    parser.add_argument("--backlog", type=int, default=300, help="BDRs per drain (≤ 8 a user)")
    parser.add_argument("--repeats", type=int, default=3, help="drains per worker count")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    cli.save(args.json, asyncio.run(run(args.backlog, args.repeats, args.events)))


PLOT = "scaling.png"


def plot(f: dict[str, Any], path: Path) -> None:
    plt = plots.pyplot()
    rows = f["backlog"]["by_workers"]
    runs = f["backlog"]["runs"]
    counts = [r["workers"] for r in rows]
    ceiling = f["config"]["poll_ceiling_per_worker"]
    fig, ((rate, cores), (burst, replay)) = plt.subplots(2, 2, figsize=(11, 9.5))

    rate.plot([r["workers"] for r in runs], [r["per_s"] for r in runs], "o", color="C0",
              alpha=0.4, label="each drain")  # fmt: skip
    rate.plot(counts, [r["per_s"] for r in rows], "o-", color="C0", label="median")
    rate.plot(counts, [ceiling * n for n in counts], ":", color="red",
              label=f"arq's poll ceiling ({f['config']['max_jobs']} jobs a "
                    f"{f['config']['poll_delay_s']:g} s poll a worker)")  # fmt: skip
    rate.set_ylim(0, max(ceiling * counts[-1], max(r["per_s"] for r in runs)) * 1.1)
    rate.set_xlabel("worker processes")
    rate.set_ylabel("BDRs completed per second")
    rate.set_title(f"(a) draining {rows[0]['bdrs']} small BDRs")
    plots.below(rate, ncols=1)

    rest = ("server_s", "redis_s", "pg_shared_s", "bench_s")
    parties = (
        (("workers_s",), "worker processes", "C0"),
        (("postgres_s",), "PostgreSQL (this database's backends)", "C2"),
        (rest, "server, Redis, PostgreSQL's shared processes, this bench", "C7"),
        (("others_s",), "other work on the machine", "C3"),
    )
    bottom = [0.0] * len(rows)
    for keys, label, color in parties:
        values = [sum(r["cpu"][k] for k in keys) / r["cpu"]["wall_s"] for r in rows]
        cores.bar([str(n) for n in counts], values, bottom=bottom, color=color, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    cores.axhline(f["config"]["cpus"], color="black", linestyle=":", label="cores on the machine")
    cores.set_xlabel("worker processes (the fastest drain of each)")
    cores.set(ylabel="cores busy during the drain", title="(b) where the CPU went")
    plots.below(cores, ncols=1)

    b = f["burst"]
    bc = [x["workers"] for x in b]
    for key, style, label in (
        ("p50_ms", "o-", "POST → ready p50"),
        ("p99_ms", "^-", "POST → ready p99"),
        ("reply_p50_ms", "s--", "POST → 202 reply p50"),
    ):
        burst.plot(bc, [x[key] for x in b], style, label=label)
    burst.set_ylim(0, max(x["max_ms"] for x in b) * 1.1)
    burst.set_xlabel("worker processes")
    burst.set_ylabel("ms")
    burst.set_title(f"(c) {b[0]['users']} users POSTing at once (ready seen over SSE)")
    plots.below(burst, ncols=3)

    for ax in (rate, burst):
        ax.set_xticks(counts)

    e = f["events"]
    plain = [x for x in e["replays"] if not x["reset"]]
    missed = [x["missed"] for x in plain]
    replay.plot(
        missed, [x["p50_ms"] for x in plain], "o-", label="stream opening to `connected`, p50"
    )
    replay.plot(missed, [x["sql_p50_ms"] for x in plain], "s--", label="its SQL alone, p50")
    replay.axhline(e["snapshot_ms"], color="C7", linestyle=":",
                   label="opening without Last-Event-ID (snapshot)")  # fmt: skip
    replay.set(xscale="log", yscale="log")
    plots.plain_log_ticks(replay.xaxis)
    plots.plain_log_ticks(replay.yaxis)
    replay.set_xlabel("events missed (replayed from an old Last-Event-ID)")
    replay.set(ylabel="ms", title=f"(d) replay with bdr_events at {e['rows']:,} rows")
    plots.below(replay, ncols=1)
    plots.save(plt, fig, path)


if __name__ == "__main__":
    main()

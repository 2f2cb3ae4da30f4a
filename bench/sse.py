"""Benchmark of the SSE stream over loopback: `python -m bench.sse`.

Not a test: it prints figures and exits 0. For 1,000, 5,000, 10,000 and 20,000 concurrent subscribers
(ten per user, the default per-user cap) on one `python server.py` process, with this process
as the load generator (raw asyncio sockets, so the client side stays cheap), it reports

- the server's RSS per idle subscriber (growth from 100 warm streams to all of them),
- the number of LISTEN connections the server holds (`pmd-sse-listener` in pg_stat_activity),
- (a) latency from the committing UPDATE to each client's receipt, p50/p99, for single
  events to one user (ten streams) while every other stream stays connected,
- (b) the same for a burst where every user's BDR changes in one statement (timed from
  sending the UPDATE, so its own execution counts too), and that UPDATE's own time;
- the server's longest garbage-collector pause (its `pmd_gc_pause_max_seconds`, measured with
  gc.callbacks from start-up to the end of the level: connections, events and bursts).

Targets (issue #17): 20,000 subscribers held by one process; <= 15 KB per idle subscriber;
(a) p99 <= 10 ms; (b) everyone within 0.5 s; no GC pause above 50 ms; exactly one LISTEN
connection whatever the count.

File descriptors: each stream is one socket in the server and one in this process. The soft
RLIMIT_NOFILE is raised to the hard limit (inherited by the server); where the hard limit is
too low for a level (20,000 here: the server also needs its pool, listener, Redis and
listening sockets), that level runs with as many streams as fit, and says so.

PostgreSQL and Redis: DATABASE_URL / REDIS_URL when set, otherwise embedded ones (under
.data/bench). A fresh database is created and dropped here. Loopback only, bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import cli, sse_box
from pmd_service.core.db import connect
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from support.measures import rss_kb
from support.seeding import Seeded, seed_stream_users
from support.stack import CHECKOUT, fresh_stack

PER_USER = 10
LEVELS = (1_000, 5_000, 10_000, 20_000)
# Descriptors a process needs besides its streams (pool, listener, Redis, epoll, logs, ...).
FD_HEADROOM = 100
WARM = 100
CONNECT_CONCURRENCY = 100
SINGLE_ROUNDS = 200
BURSTS = 3
TARGET_SUBSCRIBERS = 20_000
TARGET_KB_PER_SUBSCRIBER = 15.0
TARGET_SINGLE_P99_MS = 10.0
TARGET_BURST_MAX_S = 0.5
TARGET_GC_PAUSE_MS = 50.0

CONNECTED = b"event: connected"
UPDATE = b"event: bdr_update\nid: "


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Receipts:
    """Live events seen by all clients since the last reset: (user index, receipt time)."""

    log: list[tuple[int, float]] = field(default_factory=list)
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    disconnects: int = 0

    def reset(self, expected: int) -> None:
        self.log.clear()
        self.expected = expected
        self.done.clear()

    def add(self, user: int, at: float) -> None:
        self.log.append((user, at))
        if len(self.log) >= self.expected:
            self.done.set()


class SseClient(asyncio.Protocol):
    """One EventSource-like subscriber. A frame is written in one piece, so a marker only ever
    spans two reads, never a chunk boundary: a short tail is enough to find every one."""

    def __init__(self, user: int, request: bytes, receipts: Receipts) -> None:
        self.user = user
        self.request = request
        self.receipts = receipts
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.tail + data
        if not self.ready.done():
            if not buf.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(RuntimeError(buf[:200].decode(errors="replace")))
                return
            at = buf.find(CONNECTED)
            if at < 0:
                self.tail = buf
                return
            self.ready.set_result(None)
            buf = buf[at + len(CONNECTED) :]
        count = buf.count(UPDATE)
        for _ in range(count):
            self.receipts.add(self.user, now)
        self.tail = buf[-(len(UPDATE) - 1) :]

    def connection_lost(self, exc: Exception | None) -> None:
        self.receipts.disconnects += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before connected"))


@contextlib.asynccontextmanager
async def server_process(settings: Settings, log: Path) -> AsyncIterator[tuple[int, int]]:
    """(pid, port) of a `python server.py` child serving `settings`' database."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "JWT_SECRET_KEY": settings.jwt_secret_key,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "AUTO_MIGRATE": "false",
        "SSE_MAX_PER_USER": str(PER_USER),
        "VAULT_PATH": str(settings.vault_path),
        "BDR_PATH": str(settings.bdr_path),
    }
    with log.open("wb") as err:
        proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            [sys.executable, "server.py"],
            cwd=CHECKOUT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {await asyncio.to_thread(log.read_text)}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start within 30 s") from None
                await asyncio.sleep(0.05)
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def open_clients(
    port: int, seeded: Seeded, users: range, receipts: Receipts
) -> list[SseClient]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(user: int) -> SseClient:
        request = (
            f"GET /api/pmd/bdr/sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {seeded.tokens[user]}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        async with gate:
            _, client = await loop.create_connection(
                lambda: SseClient(user, request, receipts), "127.0.0.1", port
            )
            await asyncio.wait_for(client.ready, 30)
        return client

    return await asyncio.gather(*(one(u) for u in users for _ in range(PER_USER)))


@dataclass
class Level:
    subscribers: int
    connect_seconds: float = 0.0
    kb_per_subscriber: float = 0.0
    rss_mb: float = 0.0
    listeners: int = 0
    server_connections: int = 0
    single_ms: list[float] = field(default_factory=list)
    burst_ms: list[float] = field(default_factory=list)
    burst_worst_s: float = 0.0
    burst_update_ms: list[float] = field(default_factory=list)
    burst_delivered: str = ""
    misrouted: int = 0
    disconnects: int = 0
    asked: int = 0  # the level asked for, when the descriptor limit allowed fewer
    gc_pause_max_ms: float = 0.0
    gc_pause_max_cpu_ms: float = 0.0
    gc_pause_max_generation: int = -1
    gc_pauses: int = 0
    gc_freezes: int = 0
    gc_reclaims: int = 0


async def run_level(
    settings: Settings, seeded: Seeded, subscribers: int, db: asyncpg.Connection, log: Path
) -> Level:
    level = Level(subscribers)
    users = subscribers // PER_USER
    receipts = Receipts()
    async with server_process(settings, log) as (pid, port):
        started = time.monotonic()
        warm = await open_clients(port, seeded, range(WARM // PER_USER), receipts)
        await asyncio.sleep(0.5)
        rss_warm = rss_kb(pid)
        rest = await open_clients(port, seeded, range(WARM // PER_USER, users), receipts)
        level.connect_seconds = time.monotonic() - started
        clients = warm + rest
        await asyncio.sleep(1.0)  # idle: let the server settle
        rss_all = rss_kb(pid)
        level.rss_mb = rss_all / 1024
        level.kb_per_subscriber = (rss_all - rss_warm) / (len(clients) - len(warm))
        level.listeners = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pmd-sse-listener'"
            " AND datname = current_database()"
        )
        level.server_connections = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pmd-s%'"
            " AND datname = current_database()"
        )

        # (a) one user's BDR changes; its ten streams are timed, everyone else stays connected.
        step = "UPDATE batch_download_requests SET progress_done = (progress_done + 1) % 5 WHERE id = $1"
        for i in range(SINGLE_ROUNDS):
            user = (i * 7919) % users  # spread over the users
            receipts.reset(PER_USER)
            t0 = time.monotonic()
            await db.execute(step, seeded.bdr_ids[user])
            await asyncio.wait_for(receipts.done.wait(), 10)
            level.single_ms += [(at - t0) * 1000 for _, at in receipts.log]
            level.misrouted += sum(1 for u, _ in receipts.log if u != user)
            await asyncio.sleep(0.005)

        # (b) every user's BDR changes in one statement: one event per user, all at once.
        # Timed from sending the UPDATE, so its own execution (1 trigger per row) is included.
        # An untimed first burst warms up PostgreSQL. (It used to take the server's first full
        # garbage collection after the connection phase too, ~0.5 s at 10,000 streams; the
        # server now freezes its streams' objects, and its longest pause is reported.)
        burst = "UPDATE batch_download_requests SET progress_done = (progress_done + 1) % 5 WHERE id = ANY($1::uuid[])"
        everyone = seeded.bdr_ids[:users]
        for i in range(BURSTS + 1):
            receipts.reset(len(clients))
            t0 = time.monotonic()
            await db.execute(burst, everyone)
            committed = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receipts.done.wait(), 10)
            await asyncio.sleep(0.5)  # anything late or doubled shows up meanwhile
            if len(receipts.log) != len(clients):
                level.misrouted += abs(len(receipts.log) - len(clients))
            if i == 0:
                continue
            got = [(at - t0) * 1000 for _, at in receipts.log]
            level.burst_ms += got
            level.burst_update_ms.append((committed - t0) * 1000)
            level.burst_worst_s = max(level.burst_worst_s, max(got) / 1000)
            level.burst_delivered = f"{len(got)}/{len(clients)}"
        level.disconnects = receipts.disconnects
        await gc_figures(port, level)
        for client in clients:
            if client.transport is not None:
                client.transport.abort()
    return level


async def gc_figures(port: int, level: Level) -> None:
    """The server's longest GC pause so far and its other GC figures, from its /metrics."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    values: dict[str, float] = {}
    for line in body.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("pmd_gc_"):
            values[name] = float(value)
    level.gc_pause_max_ms = values["pmd_gc_pause_max_seconds"] * 1000
    level.gc_pause_max_cpu_ms = values["pmd_gc_pause_max_cpu_seconds"] * 1000
    level.gc_pause_max_generation = int(values["pmd_gc_pause_max_generation"])
    level.gc_pauses = int(values["pmd_gc_pauses_total"])
    level.gc_freezes = int(values["pmd_gc_freezes_total"])
    level.gc_reclaims = int(values["pmd_gc_reclaims_total"])


def report(levels: list[Level]) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print()
    print(
        f"{'subscribers':>11} {'connect':>8} {'RSS':>8} {'KB/sub':>7} {'LISTEN':>6} "
        f"{'(a) p50':>8} {'(a) p99':>8} {'(b) p50':>8} {'(b) p99':>8} {'(b) max':>8} "
        f"{'(b) got':>12} {'UPDATE':>7} {'GC max':>7} {'errors':>6}"
    )
    for lv in levels:
        print(
            f"{lv.subscribers:>11,} {lv.connect_seconds:>7.1f}s {lv.rss_mb:>6.0f}MB "
            f"{lv.kb_per_subscriber:>7.1f} {lv.listeners:>6} "
            f"{statistics.median(lv.single_ms):>6.2f}ms {_percentile(lv.single_ms, 0.99):>6.2f}ms "
            f"{statistics.median(lv.burst_ms):>6.0f}ms {_percentile(lv.burst_ms, 0.99):>6.0f}ms "
            f"{lv.burst_worst_s * 1000:>6.0f}ms {lv.burst_delivered:>12} "
            f"{statistics.median(lv.burst_update_ms):>5.0f}ms {lv.gc_pause_max_ms:>5.0f}ms "
            f"{lv.misrouted + lv.disconnects:>6}"
        )
    print()
    for lv in levels:
        print(
            f"(b) at {lv.subscribers:,}: the {lv.subscribers // PER_USER}-row UPDATE itself took "
            f"{statistics.median(lv.burst_update_ms):.0f} ms (median of {BURSTS}) of that"
        )
    print()
    for lv in levels:
        if lv.asked:
            print(f"{lv.asked:,} asked, {lv.subscribers:,} held: the hard RLIMIT_NOFILE "
                  f"({resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,}) leaves no room for more")  # fmt: skip
    top = max(levels, key=lambda lv: lv.subscribers)
    held = top.subscribers >= TARGET_SUBSCRIBERS
    print(f"held {top.subscribers:,} subscribers on one process (target {TARGET_SUBSCRIBERS:,}): "
          f"{verdict(held) if held or not top.asked else 'MISSED (descriptor limit)'}")  # fmt: skip
    worst_kb = max(lv.kb_per_subscriber for lv in levels)
    print(f"RSS per idle subscriber <= {TARGET_KB_PER_SUBSCRIBER:.0f} KB (worst {worst_kb:.1f} KB): "
          f"{verdict(worst_kb <= TARGET_KB_PER_SUBSCRIBER)}")  # fmt: skip
    worst_p99 = max(_percentile(lv.single_ms, 0.99) for lv in levels)
    worst_p50 = max(statistics.median(lv.single_ms) for lv in levels)
    print(f"(a) one event to one user: p50 {worst_p50:.2f} ms, p99 {worst_p99:.2f} ms (worst level), "
          f"target p99 <= {TARGET_SINGLE_P99_MS:.0f} ms: "
          f"{verdict(worst_p99 <= TARGET_SINGLE_P99_MS)}")  # fmt: skip
    worst_burst = max(lv.burst_worst_s for lv in levels)
    all_delivered = all(
        lv.burst_delivered == f"{lv.subscribers}/{lv.subscribers}" and lv.misrouted == 0
        for lv in levels
    )
    print(f"(b) burst: every client within {TARGET_BURST_MAX_S:.1f} s (slowest {worst_burst:.3f} s, "
          f"all delivered exactly once: {all_delivered}): "
          f"{verdict(worst_burst <= TARGET_BURST_MAX_S and all_delivered)}")  # fmt: skip
    print(
        f"(b) the burst's own UPDATE at {top.subscribers:,}: "
        f"{statistics.median(top.burst_update_ms):.0f} ms (median of {BURSTS})"
    )
    worst_gc = max(lv.gc_pause_max_ms for lv in levels)
    print(
        f"longest GC pause <= {TARGET_GC_PAUSE_MS:.0f} ms (worst {worst_gc:.1f} ms): "
        f"{verdict(worst_gc <= TARGET_GC_PAUSE_MS)}"
    )
    for lv in levels:
        print(
            f"  GC at {lv.subscribers:,}: longest pause {lv.gc_pause_max_ms:.1f} ms wall, "
            f"{lv.gc_pause_max_cpu_ms:.1f} ms CPU (generation {lv.gc_pause_max_generation}); "
            f"{lv.gc_pauses} pauses, {lv.gc_freezes} freezes, {lv.gc_reclaims} reclaims"
        )
    one = all(lv.listeners == 1 for lv in levels)
    print(f"exactly one LISTEN connection per process at every level: {verdict(one)}")
    print(f"streams dropped during the runs: {sum(lv.disconnects for lv in levels)}")


def summary(lv: Level) -> dict[str, Any]:
    """One level's figures for --json."""

    def spread(samples: list[float]) -> dict[str, float]:
        return {
            "p50_ms": statistics.median(samples),
            "p90_ms": _percentile(samples, 0.90),
            "p99_ms": _percentile(samples, 0.99),
            "max_ms": max(samples),
        }

    return {
        "subscribers": lv.subscribers,
        "connect_s": lv.connect_seconds,
        "rss_mb": lv.rss_mb,
        "kb_per_subscriber": lv.kb_per_subscriber,
        "listeners": lv.listeners,
        "single": spread(lv.single_ms),
        "burst": spread(lv.burst_ms),
        "burst_update_ms": statistics.median(lv.burst_update_ms),
        "burst_update_all_ms": lv.burst_update_ms,
        "gc_pause_max_ms": lv.gc_pause_max_ms,
        "gc_pause_max_cpu_ms": lv.gc_pause_max_cpu_ms,
        "gc_pause_max_generation": lv.gc_pause_max_generation,
        "gc_pauses": lv.gc_pauses,
        "gc_freezes": lv.gc_freezes,
        "gc_reclaims": lv.gc_reclaims,
        "asked": lv.asked or lv.subscribers,
        "burst_delivered": lv.burst_delivered,
        "errors": lv.misrouted + lv.disconnects,
    }


async def bench(settings: Settings, levels: tuple[int, ...], log_dir: Path) -> list[Level]:
    assert settings.database_url is not None
    ids = PublicIds(settings.sqids_alphabet)
    seeded = await seed_stream_users(
        settings.database_url, ids, settings.jwt_secret_key, max(map(fitting, levels)) // PER_USER
    )
    db = await connect(settings.database_url, "pmd-bench")
    results: list[Level] = []
    try:
        for n in levels:
            held = fitting(n)
            note = f" ({n:,} asked; the descriptor limit allows {held:,})" if held < n else ""
            print(f"{held:,} subscribers{note} ...", flush=True)
            level = await run_level(settings, seeded, held, db, log_dir / f"server-{held}.log")
            level.asked = n if held < n else 0
            results.append(level)
    finally:
        await db.close()
    report(results)
    return results


def raise_fd_limit(needed: int) -> None:
    """The soft RLIMIT_NOFILE up to what `needed` streams take, as far as the hard limit goes
    (raising that takes privileges this process may not have); the server inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + FD_HEADROOM
    target = want if hard == resource.RLIM_INFINITY else min(max(soft, want), hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def fitting(subscribers: int) -> int:
    """`subscribers`, or as many (in whole users) as the descriptor limit lets both processes
    hold."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return subscribers
    return min(subscribers, (soft - FD_HEADROOM) // PER_USER * PER_USER)


async def main_async(levels: tuple[int, ...]) -> list[Level]:
    async with fresh_stack() as settings:
        return await bench(settings, levels, settings.vault_path.parent)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("sse", __doc__)
    parser.add_argument(
        "--levels",
        help=f"comma-separated subscriber counts (multiples of 10; default {LEVELS}); with "
        "--box, stream counts (multiples of 100) instead of --streams and its fractions",
    )
    parser.add_argument(
        "--box",
        action="store_true",
        help="the whole box instead: many server processes, six asyncio client processes; "
        "per level an opening flood, memory, events, the burst, a reconnect storm and a ticket "
        "storm, then the same clients against a bare aiohttp app (see bench/sse_box.py)",
    )
    parser.add_argument(
        "--streams", type=int, default=100_000, help="with --box: the top stream count"
    )
    parser.add_argument(
        "--burst-only",
        action="store_true",
        help="with --box: each level filled by the lean storm client, then the burst alone",
    )
    parser.add_argument(
        "--server-root",
        type=Path,
        help="with --box: run the server of this checkout (its server.py, package and "
        "migrations), to compare another commit's code on the same box",
    )
    args = parser.parse_args(argv)
    if args.box:
        box_levels = sse_box.levels_for(args.streams)
        if args.levels:
            box_levels = [int(n) for n in args.levels.split(",")]
        run = sse_box.run(box_levels, args.burst_only, args.server_root)
        cli.save(args.json, {"box": asyncio.run(run)})
        return 0
    levels = tuple(int(n) for n in args.levels.split(",")) if args.levels else LEVELS
    raise_fd_limit(max(levels))
    results = asyncio.run(main_async(levels))
    cli.save(args.json, [summary(lv) for lv in results])
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import cli, sse_box
from bench.sse_box import Client
from bench.storm_client import Receipts as Receipts  # bench.processes holds its streams with
from bench.storm_client import SseClient as SseClient  # these two
from pmd_service.core.db import connect
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from support.measures import percentile, rss_kb
from support.seeding import Seeded, seed_stream_users
from support.stack import free_port, fresh_stack, listeners, service_env, start_server, stop

PER_USER = 10
LEVELS = (1_000, 5_000, 10_000, 20_000)
# Descriptors a process needs besides its streams (pool, listener, Redis, epoll, logs, ...).
FD_HEADROOM = 100
WARM = 100
CONNECT_CONCURRENCY = 100
SINGLE_ROUNDS = 200
BURSTS = 3
# The server's GC figures on its /metrics (sse/heap.py): here `gc_` and the name without
# `_total`, in ms for seconds.
GC = ("pause_max_seconds", "pause_max_cpu_seconds", "pause_max_generation", "pauses_total",
      "freezes_total", "reclaims_total")  # fmt: skip


def spread(ms: list[float]) -> dict[str, float]:
    return sse_box.spread(ms) | {"p90_ms": percentile(ms, 0.90)}


async def run_level(
    settings: Settings, seeded: Seeded, subscribers: int, db: Any, log: Path
) -> dict[str, Any]:
    """One level's figures, on a server of its own."""
    users = subscribers // PER_USER
    env = service_env(settings, HOST="127.0.0.1", SSE_MAX_PER_USER=str(PER_USER))
    port = free_port()
    with log.open("wb") as out:
        server = await asyncio.to_thread(start_server, env, port, out)
    tokens = list(enumerate(seeded.tokens[:users]))
    client = Client(source="127.0.0.1", port=port, users=tokens, per_user=PER_USER)
    try:
        started = time.monotonic()
        opened = [await client.open(0, WARM // PER_USER, CONNECT_CONCURRENCY)]
        warm = len(client.streams)
        await asyncio.sleep(0.5)
        rss_warm = rss_kb(server.pid)
        opened.append(await client.open(WARM // PER_USER, users, CONNECT_CONCURRENCY))
        if len(client.streams) != subscribers:
            raise RuntimeError(f"{len(client.streams)} of {subscribers} opened: {opened}")
        lv: dict[str, Any] = {"subscribers": subscribers, "connect_s": time.monotonic() - started}
        await asyncio.sleep(1.0)  # idle: let the server settle
        rss_all = rss_kb(server.pid)
        lv |= {"rss_mb": rss_all / 1024, "listeners": await listeners(db),
               "kb_per_subscriber": (rss_all - rss_warm) / (subscribers - warm)}  # fmt: skip

        # (a) one user's BDR changes; its ten streams are timed, everyone else stays connected.
        single: list[float] = []
        errors = 0
        for i in range(SINGLE_ROUNDS):
            user = (i * 7919) % users  # spread over the users
            client.arm(user, PER_USER)
            t0 = time.monotonic()
            await db.execute(sse_box.STEP, seeded.bdr_ids[user])
            await client.wait(10)
            single += [(at - t0) * 1000 for at in client.times]
            errors += client.misrouted + abs(PER_USER - len(client.times))  # wrong, lost, twice
            await asyncio.sleep(0.005)

        # (b) every user's BDR changes in one statement: one event per user, all at once.
        # Timed from sending the UPDATE, so its own execution (1 trigger per row) is included.
        # An untimed first burst warms up PostgreSQL. (It used to take the server's first full
        # garbage collection after the connection phase too, ~0.5 s at 10,000 streams; the
        # server now freezes its streams' objects, and its longest pause is reported.)
        burst: list[float] = []
        update_ms: list[float] = []
        for i in range(BURSTS + 1):
            client.arm(-1, subscribers)
            t0 = time.monotonic()
            await db.execute(sse_box.BURST, seeded.bdr_ids[:users])
            committed = time.monotonic()
            await client.wait(10)
            await asyncio.sleep(0.5)  # anything late or doubled shows up meanwhile
            errors += abs(len(client.times) - subscribers)
            if i > 0:
                burst += [(at - t0) * 1000 for at in client.times]
                update_ms.append((committed - t0) * 1000)
                lv["burst_delivered"] = f"{len(client.times)}/{subscribers}"
        lv |= {"single": spread(single), "burst": spread(burst),
               "burst_update_ms": statistics.median(update_ms), "burst_update_all_ms": update_ms,
               "errors": errors + client.lost} | await gc_figures(port)  # fmt: skip
    finally:
        client.close()
        await asyncio.to_thread(stop, server)
    return lv


async def gc_figures(port: int) -> dict[str, float]:
    """The server's longest GC pause so far and its other GC figures, from its /metrics."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    values = {}
    for line in body.splitlines():
        name, _, value = line.partition(" ")
        values[name] = value
    out: dict[str, float] = {}
    for name in GC:
        got = float(values[f"pmd_gc_{name}"])
        key = "gc_" + name.removesuffix("_total").replace("_seconds", "_ms")
        out[key] = got * 1000 if name.endswith("_seconds") else int(got)
    return out


async def bench(levels: tuple[int, ...]) -> list[dict[str, Any]]:
    async with fresh_stack() as settings:
        ids = PublicIds(settings.sqids_alphabet)
        seeded = await seed_stream_users(settings.database_url, ids, settings.jwt_secret_key,
                                         max(map(fitting, levels)) // PER_USER)  # fmt: skip
        db = await connect(settings.database_url, "pmd-bench")
        results = []
        try:
            for n in levels:
                held = fitting(n)
                note = f" ({n:,} asked; the descriptor limit allows {held:,})" if held < n else ""
                print(f"{held:,} subscribers{note} ...", flush=True)
                log = settings.vault_path.parent / f"server-{held}.log"
                lv = await run_level(settings, seeded, held, db, log) | {"asked": n}
                print(f"  connected in {lv['connect_s']:.1f} s, {lv['rss_mb']:.0f} MB RSS, "
                      f"{lv['kb_per_subscriber']:.1f} KB a subscriber, {lv['listeners']} LISTEN; "
                      f"(a) p50 {lv['single']['p50_ms']:.2f} ms, p99 {lv['single']['p99_ms']:.2f} "
                      f"ms; (b) p50 {lv['burst']['p50_ms']:.0f} ms, max {lv['burst']['max_ms']:.0f}"
                      f" ms, {lv['burst_delivered']} (its UPDATE {lv['burst_update_ms']:.0f} ms); "
                      f"GC max {lv['gc_pause_max_ms']:.1f} ms; errors {lv['errors']}", flush=True)  # fmt: skip
                results.append(lv)
        finally:
            await db.close()
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
    levels = [int(n) for n in args.levels.split(",")] if args.levels else None
    if args.box:
        run = sse_box.run(levels or sse_box.levels_for(args.streams), args.burst_only,
                          args.server_root)  # fmt: skip
        cli.save(args.json, {"box": asyncio.run(run)})
        return 0
    levels = levels or list(LEVELS)
    raise_fd_limit(max(levels))
    cli.save(args.json, asyncio.run(bench(tuple(levels))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

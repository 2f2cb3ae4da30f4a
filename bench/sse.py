"""The SSE stream over loopback: `python -m bench.sse [--box] [--levels N,…]`. Default: one
server process, 1,000 to 20,000 streams; `--box`: 12,500 to 100,000 on several; `--against
REV`: only the burst at one level, on these servers and REV's in turns."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import cli, sse_floor
from bench.storm_client import Client
from pmd_service.core.db import read_budget
from pmd_service.core.settings import Settings
from support import stack
from support.measures import percentile, tree_rss_kb
from support.release import CURRENT, Release, install
from support.seeding import Seeded, seed_stream_users

TOP = 100_000  # the box's streams at its top level; half, a quarter and an eighth below it
STREAMS_PER_PROCESS = 14_300  # 100,000 / 7: each box server process stays under 20,000 descriptors
FD_HEADROOM = 100  # descriptors a process needs besides its streams (pool, listener, Redis...)
CLIENTS = 6  # client processes, 16,667 streams each at 100,000
WARM_CONCURRENCY = 200  # openings in flight per client for the warm baseline
RECEIPTS = 4_000  # one event's samples a level: rounds × a user's streams
BURSTS = 3
STEP = "UPDATE batch_download_requests SET progress_done = (progress_done + 1) % 5 WHERE id = $1"
BURST = STEP.replace("id = $1", "id = ANY($1::uuid[])")
# The server's GC figures on its /metrics (sse/heap.py).
GC = (
    "pause_max_seconds",
    "pause_max_cpu_seconds",
    "pause_max_generation",
    "pauses_total",
    "freezes_total",
    "reclaims_total",
)
TARGETS = {
    "streams": TOP,
    "kb_per_stream_rss": 10.0,
    "event_p99_ms": 50.0,
    "burst_all_s": 1.0,
    "storm_s": 30.0,
    "storm_5xx": 0,
    "flood_shed_pct": 0.1,  # openings answered 503 in the flood, % of the streams
    "storm_vs_base": 1.5,  # the storm's time against the bare aiohttp app's
}


@dataclass(frozen=True)
class Mode:
    per_user: int
    levels: tuple[int, ...]
    box: bool
    flood: int

    def processes(self, streams: int) -> int:
        return max(1, math.ceil(streams / STREAMS_PER_PROCESS)) if self.box else 1

    def clients(self, streams: int) -> int:
        return min(CLIENTS, max(1, streams // self.per_user))


ONE = Mode(10, (1_000, 5_000, 10_000, 20_000), box=False, flood=17)
BOX = Mode(100, tuple(sorted({TOP // d // 100 * 100 for d in (8, 4, 2, 1)})), True, 4_000)


def spread(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 0.99), "max_ms": max(ms)}


def raise_fd_limit(want: int) -> int:
    """RLIMIT_NOFILE raised to `want` where it may be (inherited): the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return want if soft == resource.RLIM_INFINITY else soft


def client_main(
    conn: Connection, source: str, port: int, users: list[tuple[int, str]], per_user: int
) -> None:
    raise_fd_limit(len(users) * per_user + FD_HEADROOM)

    async def serve() -> None:
        client = Client(source=source, port=port, users=users, per_user=per_user)
        while True:
            command, args = await asyncio.to_thread(conn.recv)
            reply = getattr(client, command)(*args)
            conn.send(await reply if asyncio.iscoroutine(reply) else reply)
            if command == "close":
                return

    asyncio.run(serve())


class Clients:
    def __init__(self, port: int, tokens: list[str], streams: int, mode: Mode) -> None:
        users = list(enumerate(tokens[: streams // mode.per_user]))
        count = mode.clients(streams)
        share = math.ceil(len(users) / count)
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for i in range(count):
            ours, theirs = ctx.Pipe()
            mine = users[i * share : (i + 1) * share]
            p = ctx.Process(
                target=client_main, args=(theirs, f"127.0.0.{2 + i}", port, mine, mode.per_user)
            )
            p.start()
            self.pipes.append(ours)
            self.procs.append(p)

    async def all(self, command: str, *args: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((command, args))
        return list(await asyncio.gather(*(asyncio.to_thread(p.recv) for p in self.pipes)))

    async def holding(self) -> int:
        return sum(r["held"] for r in await self.all("held"))

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *_: object) -> None:
        with contextlib.suppress(OSError, EOFError):
            await self.all("close")
        for p in self.procs:
            await asyncio.to_thread(p.join, 30)
            if p.is_alive():
                p.kill()


def tally(answers: list[dict[str, Any]], t0: float, want: int) -> tuple[float, int, dict[str, int]]:
    """The time from `t0` until all `want` opened (inf if not), how many did, the statuses not 200."""
    statuses = sum((Counter(r["statuses"]) for r in answers), Counter[str]())
    opened = sum(r["opened"] for r in answers)
    took = max(r["last"] for r in answers) - t0 if opened == want else math.inf
    return took, opened, dict(sorted(statuses.items()))


def storm_summary(storm: list[dict[str, Any]], holding: int, t0: float) -> dict[str, Any]:
    took, reopened, statuses = tally(storm, t0, holding)
    return {
        "storm_s": took,
        "storm_reopened": reopened,
        "storm_statuses": statuses,
        "storm_failures": dict(sum((Counter(r["failures"]) for r in storm), Counter())),
        "storm_5xx": sum(n for k, n in statuses.items() if 500 <= int(k) < 600),
    }


@dataclass
class Bench:
    settings: Settings
    seeded: Seeded
    db: Any
    pool_room: int  # connections the servers' pools and listeners may take in all
    mode: Mode
    release: Release = CURRENT  # whose servers serve the streams
    burst_only: bool = False  # the flood and the bursts only (an A/B of the burst)


async def flood(clients: Clients, mode: Mode) -> dict[str, Any]:
    t0 = time.monotonic()
    got = await clients.all("open", 1, None, mode.flood)
    asked = sum(r["asked"] for r in got)
    took, opened, statuses = tally(got, t0, asked)
    shed = statuses.get("503", 0)  # shed by the server, then retried as EventSource would
    return {
        "flood_s": took,
        "flood_opened": opened,
        "flood_asked": asked,
        "flood_statuses": statuses,
        "flood_shed": shed,
        "flood_shed_pct": 100 * shed / max(1, asked),
    }


async def storms(clients: Clients, holding: int) -> dict[str, Any]:
    t0 = time.monotonic()
    out = storm_summary(await clients.all("storm", False), holding, t0)
    t0 = time.monotonic()
    return out | {"tickets": storm_summary(await clients.all("storm", True), holding, t0)}


async def baseline(b: Bench, streams: int) -> dict[str, Any]:
    port = stack.free_port()
    procs = await asyncio.to_thread(sse_floor.start, port, b.mode.processes(streams))
    try:
        async with Clients(port, b.seeded.tokens, streams, b.mode) as clients:
            await clients.all("open", 0, 1, WARM_CONCURRENCY)
            out = await flood(clients, b.mode)
            out |= await storms(clients, await clients.holding())
    finally:
        await asyncio.to_thread(sse_floor.stop, procs)
    cli.show("  baseline (bare aiohttp)", out)
    return out


async def gc_figures(port: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    values = dict(line.partition(" ")[::2] for line in (await reader.read()).decode().splitlines())
    writer.close()
    out: dict[str, float] = {}
    for name in GC:
        got = float(values[f"pmd_gc_{name}"])
        key = "gc_" + name.removesuffix("_total").replace("_seconds", "_ms")
        out[key] = got * 1000 if name.endswith("_seconds") else int(got)
    return out


@contextlib.asynccontextmanager
async def served(
    b: Bench, streams: int, connections: int
) -> AsyncIterator[tuple[int, int, Clients, dict[str, Any]]]:
    """The level's servers (their parent's pid, their port), its clients, its first figures."""
    processes = b.mode.processes(streams)
    pool = max(2, min(10, b.pool_room // processes - 1))
    # HEADER_TIMEOUT_SECONDS as long as the keep-alive: clients on the servers' cores send late.
    env = cli.service_env(
        b.settings,
        SERVER_PROCESSES=str(processes),
        DB_POOL_MIN="1",
        SSE_MAX_PER_USER=str(b.mode.per_user),
        DB_POOL_MAX=str(pool),
        HEADER_TIMEOUT_SECONDS="130",
        MAX_CONNECTIONS=str(connections),
    )
    port = stack.free_port()
    log_path = stack.CHECKOUT / ".data" / "bench" / f"sse-server-{streams}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)  # a fresh checkout has no .data/bench
    env |= b.release.env
    argv = stack.SERVER if b.release is CURRENT else b.release.argv("serve")
    with log_path.open("wb") as log:  # the server keeps a descriptor of its own
        server = await asyncio.to_thread(stack.start_server, env, port, log, argv)
    per_user = b.mode.per_user
    fig = {"streams": streams, "processes": processes, "pool_max": pool, "per_user": per_user}
    try:
        while len(await stack.listener_pids(b.db)) < processes:  # noqa: ASYNC110 - nothing announces it
            await asyncio.sleep(0.05)
        async with Clients(port, b.seeded.tokens, streams, b.mode) as clients:
            yield server.pid, port, clients, fig | {"users": streams // per_user}
    finally:
        await asyncio.to_thread(stack.stop, server)


async def run_level(b: Bench, streams: int, connections: int) -> dict[str, Any]:
    per_user = b.mode.per_user
    async with served(b, streams, connections) as (server_pid, port, clients, fig):
        warm = await clients.all("open", 0, 1, WARM_CONCURRENCY)  # one user's per client
        await asyncio.sleep(1.0)
        rss0 = tree_rss_kb(server_pid)
        fig |= await flood(clients, b.mode)
        cli.show("  flood", {k: v for k, v in fig.items() if k.startswith("flood")})
        await asyncio.sleep(3.0)  # idle: let the server settle
        rss1, held = tree_rss_kb(server_pid), await clients.holding()
        grown = held - sum(r["opened"] for r in warm)
        fig |= {
            "held": held,
            "rss_mb": rss1 / 1024,
            "kb_per_stream_rss": (rss1 - rss0) / grown,
            "listeners": len(await stack.listener_pids(b.db)),
        }
        cli.show("  held", {k: fig[k] for k in ("held", "rss_mb", "kb_per_stream_rss")})

        bdr_ids = b.seeded.bdr_ids[: fig["users"]]
        if b.burst_only:
            return fig | await bursts(b.db, bdr_ids, clients, await clients.holding())
        fig |= await one_events(b.db, bdr_ids, clients, RECEIPTS // per_user, per_user)
        fig["event_p99_ms"] = fig["event"]["p99_ms"]
        holding = await clients.holding()
        fig |= await bursts(b.db, bdr_ids, clients, holding)
        if fig["processes"] == 1:  # /metrics answers for whichever process takes the request
            fig |= await gc_figures(port)
        fig |= await storms(clients, holding)
        cli.show(
            "  storms", {k: v for k, v in fig.items() if k.startswith("storm") or k == "tickets"}
        )
    base = fig["base"] = await baseline(b, streams)
    mine, theirs = fig["storm_s"], base["storm_s"]
    fig["storm_vs_base"] = (
        mine / theirs if math.isfinite(mine) and math.isfinite(theirs) else math.inf
    )
    cli.show("  the service ÷ the baseline", {"storm_vs_base": fig["storm_vs_base"]})
    return fig


async def one_events(
    db: Any, bdr_ids: list[Any], clients: Clients, rounds: int, per_user: int
) -> dict[str, Any]:
    single: list[float] = []
    misrouted = 0
    for i in range(rounds):
        user = (i * 7919) % len(bdr_ids)
        await clients.all("arm", user)
        t0 = time.monotonic()
        await db.execute(STEP, bdr_ids[user])
        for r in await clients.all("wait", 10.0):
            single += [(at - t0) * 1000 for at in r["times"]]
            misrouted += r["misrouted"]
        await asyncio.sleep(0.02)
    event = spread(single) | {"samples": len(single), "expected": rounds * per_user}
    cli.show("  one event", event)
    return {"event": event, "misrouted": misrouted}


async def bursts(db: Any, bdr_ids: list[Any], clients: Clients, holding: int) -> dict[str, Any]:
    """Every user's BDR changed in one UPDATE, BURSTS times after an untimed one."""
    burst_ms: list[float] = []
    each: list[dict[str, float]] = []
    delivered: list[str] = []
    update_ms: list[float] = []
    wrong = 0
    for i in range(BURSTS + 1):
        await clients.all("arm", -1)
        t0 = time.monotonic()
        await db.execute(BURST, bdr_ids)
        committed = time.monotonic()
        ms = [(at - t0) * 1000 for r in await clients.all("wait", 30.0) for at in r["times"]]
        await asyncio.sleep(0.5)
        if i > 0:
            update_ms.append((committed - t0) * 1000)
            burst_ms += ms
            delivered.append(f"{len(ms)}/{holding}")
            wrong += abs(holding - len(ms))
            all_s = max(ms) / 1000 if len(ms) == holding else math.inf
            each.append({k: v for k, v in spread(ms).items() if k != "max_ms"} | {"all_s": all_s})
    burst: dict[str, Any] = spread(burst_ms) | {
        "update_ms": statistics.median(update_ms),
        "delivered": delivered,
        "each": each,
    }
    cli.show("  burst", burst | {"all_s": max(b["all_s"] for b in each)})
    return {"burst": burst, "burst_all_s": max(b["all_s"] for b in each), "burst_wrong": wrong}


async def run(
    mode: Mode,
    levels: list[int],
    releases: tuple[Release, ...] = (CURRENT,),
    burst_only: bool = False,
) -> dict[str, Any]:
    async with stack.fresh_stack() as settings:
        seeded = await seed_stream_users(settings, max(levels) // mode.per_user)
        budget = await read_budget(settings.database_url)
        # All the database allows less what others hold now, and some to spare.
        room = budget.allowed - budget.in_use - 15
        print(
            f"database: max_connections {budget.max_connections}, {budget.reserved} reserved, "
            f"{budget.in_use} in use: {room} for the servers' pools and listeners"
        )
        results = []
        async with stack.connected(settings.database_url, "pmd-bench") as db:
            b = Bench(settings, seeded, db, room, mode, burst_only=burst_only)
            for asked, release in itertools.product(levels, releases):
                b.release = release
                processes = mode.processes(asked)
                # A level past what the descriptor limit leaves is cut to whole users.
                conns = raise_fd_limit(asked // processes + 2 * FD_HEADROOM) - FD_HEADROOM
                n = min(asked, (conns - FD_HEADROOM) * processes // mode.per_user * mode.per_user)
                note = f" ({asked:,} asked; the descriptor limit allows {n:,})" if n < asked else ""
                print(
                    f"{n:,} streams{note}, {processes} server process(es) of {b.release.name}, "
                    f"{mode.clients(n)} client process(es) ..."
                )
                load = os.getloadavg()
                level = await run_level(b, n, conns) | {"asked": asked, "code": b.release.name}
                results.append(level | {"load": [load, os.getloadavg()]})
    return {"levels": results, "targets": TARGETS}


async def against(rev: str, runs: int, level: int) -> dict[str, Any]:
    """The burst at `level` streams on this checkout's servers and on `rev`'s, `runs` turns each."""
    (stack.CHECKOUT / ".data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=stack.CHECKOUT / ".data") as folder:
        other = await asyncio.to_thread(install, rev, Path(folder))
        done = await run(BOX, [level] * runs, (CURRENT, other), burst_only=True)
    summary = {}
    for release in (CURRENT, other):
        mine = [lv for lv in done["levels"] if lv["code"] == release.name]
        worst = [lv["burst_all_s"] for lv in mine]
        summary[release.name] = {
            "runs": len(mine),
            "run_worst_all_s": {
                "median": statistics.median(worst),
                "min": min(worst),
                "max": max(worst),
            },
        }
    return {
        "this": CURRENT.name,
        "baseline": other.name,
        "runs": done["levels"],
        "summary": summary,
    }


def section(f: dict[str, Any]) -> dict[str, Any]:
    if "baseline" in f:  # an A/B of the burst: rendered as it is
        return f
    levels = f["levels"]
    top = max(levels, key=lambda lv: lv["streams"])
    kbs = [lv["kb_per_stream_rss"] for lv in levels]
    return f | {
        "top": top,
        "worst_kb": max(kbs),
        "best_kb": min(kbs),
        "p99": max(lv["event_p99_ms"] for lv in levels),
        "worst_ms": max(lv["burst"]["max_ms"] for lv in levels),
        "gc_max": max(lv.get("gc_pause_max_ms", math.inf) for lv in levels),
        "gc_cpu": max(lv.get("gc_pause_max_cpu_ms", math.inf) for lv in levels),
        "delivered": all(
            lv["burst_wrong"] == lv["misrouted"] == 0
            and lv["event"]["samples"] == lv["event"]["expected"]
            for lv in levels
        ),
        "one": all(lv["listeners"] == lv["processes"] for lv in levels),
    }


if __name__ == "__main__":
    parser = cli.parser("sse", __doc__)
    parser.add_argument(
        "--levels", help="comma-separated stream counts (multiples of 10, or of 100 with --box)"
    )
    parser.add_argument("--box", action="store_true", help="every core: 12,500 to 100,000")
    parser.add_argument(
        "--against",
        metavar="REV",
        help="only the burst at the one --box level, alternating with REV's servers (a tag)",
    )
    parser.add_argument("--runs", type=int, default=3, help="with --against: runs of each")
    args = parser.parse_args()
    mode = BOX if args.box else ONE
    levels = [int(n) for n in args.levels.split(",")] if args.levels else list(mode.levels)
    # Memory a stream is the growth past the warm streams, so a level must hold more than those.
    warm = CLIENTS * mode.per_user
    if low := [n for n in levels if n <= warm]:
        parser.error(
            f"--levels {','.join(map(str, low))}: each level must be above the {warm} "
            "warm streams the memory a stream is measured from"
        )
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, as it goes
    if args.against:
        if not args.box or len(levels) != 1:
            parser.error("--against needs --box and one level in --levels")
        cli.save(args.json, asyncio.run(against(args.against, args.runs, levels[0])))
    else:
        cli.save(args.json, asyncio.run(run(mode, levels)))

"""One box, every core: `python -m bench.sse --box`.

Not a test: it prints figures and exits 0. At 100,000 streams, half, a quarter, an eighth: the
server on as many processes as keep each under 20,000 descriptors, six client processes; the
opening flood, memory, one event, the burst, a reconnect and a ticket storm, then the same flood
and storms against a bare aiohttp app (bench/sse_floor.py). Each figure: docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import resource
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import cli, sse_floor
from bench.storm_client import Client
from pmd_service.core.db import connect, read_budget
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from support import stack
from support.measures import cpu_seconds, machine_seconds, percentile, tree_rss_kb
from support.seeding import Seeded, seed_stream_users

PER_USER = 100
TOP = 100_000  # streams at the top level; half, a quarter and an eighth below it
STREAMS_PER_PROCESS = 14_300  # 100,000 / 7: each server process stays under 20,000 descriptors
CLIENTS = 6  # the flood: six ordinary asyncio clients, 16,667 streams each at 100,000
WARM_CONCURRENCY = 200  # openings in flight per client for the warm baseline
# The flood's openings in flight per client. All at once, the clients (on the servers' two
# cores) could not send their requests within a server's 15 s keep-alive: ~70,000 connections
# were closed unanswered, and their retries kept it so (2026-11-25).
FLOOD_CONCURRENCY = 4_000
SINGLE_ROUNDS = 40
BURSTS = 3
STEP = "UPDATE batch_download_requests SET progress_done = (progress_done + 1) % 5 WHERE id = $1"
BURST = STEP.replace("id = $1", "id = ANY($1::uuid[])")
TARGETS = {
    "streams": TOP,
    "kb_per_stream_rss": 12.0,
    "event_p99_ms": 50.0,
    "burst_all_s": 2.0,
    "storm_s": 30.0,
    "storm_5xx": 0,
    "flood_shed_pct": 0.1,  # openings answered 503 in the flood, % of the streams
    "storm_vs_base": 1.5,  # the storm's time against the bare aiohttp app's
}


def spread(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 0.99), "max_ms": max(ms)}


def processes_for(streams: int) -> int:
    return max(1, math.ceil(streams / STREAMS_PER_PROCESS))


def clients_for(streams: int) -> int:
    return min(CLIENTS, max(1, streams // PER_USER))


def levels_for(top: int) -> list[int]:
    return sorted({max(PER_USER, top // d // PER_USER * PER_USER) for d in (8, 4, 2, 1)})


def client_main(conn: Connection, source: str, port: int, users: list[tuple[int, str]]) -> None:
    """A client process: runs each command it is sent, a method of its `Client`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = len(users) * PER_USER + 1000
    if soft < want:
        # Root may raise the hard limit too (up to fs.nr_open); the servers never get this.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))

    async def serve() -> None:
        client = OneClient(Client(source=source, port=port, users=users, per_user=PER_USER))
        while True:
            command, args = await asyncio.to_thread(conn.recv)
            conn.send((await client.all(command, *args))[0])
            if command == "close":
                return

    asyncio.run(serve())


class Clients:
    """A level's client processes, each from its own source address, driven over pipes."""

    def __init__(self, port: int, tokens: list[str], streams: int) -> None:
        users = list(enumerate(tokens[: streams // PER_USER]))
        count = clients_for(streams)
        share = math.ceil(len(users) / count)
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for i in range(count):
            ours, theirs = ctx.Pipe()
            mine = users[i * share : (i + 1) * share]
            p = ctx.Process(target=client_main, args=(theirs, f"127.0.0.{2 + i}", port, mine))
            p.start()
            self.pipes.append(ours)
            self.procs.append(p)

    async def all(self, command: str, *args: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((command, args))
        return list(await asyncio.gather(*(asyncio.to_thread(p.recv) for p in self.pipes)))

    async def holding(self) -> int:
        return sum(r["held"] for r in await self.all("held"))

    async def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            await self.all("close")
        for p in self.procs:
            await asyncio.to_thread(p.join, 30)
            if p.is_alive():
                p.kill()


def kernel_kb() -> tuple[float, int]:
    """The machine's TCP buffers (/proc/net/sockstat `mem` pages) and slab, in KB."""
    tcp = Path("/proc/net/sockstat").read_text().split("TCP:")[1].split()
    slab = Path("/proc/meminfo").read_text().split("Slab:")[1].split()[0]
    return int(tcp[tcp.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") / 1024, int(slab)


def server_pids(pid: int) -> list[int]:
    """The server's parent process and the SERVER_PROCESSES under it."""
    return [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]


def is_postgres(proc: Path) -> bool:
    with contextlib.suppress(OSError):
        return (proc / "comm").read_text().strip() == "postgres"
    return False


def cpu_split(servers: list[int], clients: Clients) -> dict[str, float]:
    """CPU seconds so far of the servers, PostgreSQL, the client processes, and the machine."""
    postgres = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and is_postgres(d)]
    return {
        "servers": sum(map(cpu_seconds, servers)),
        "database": sum(map(cpu_seconds, postgres)),
        "clients": sum(cpu_seconds(p.pid) for p in clients.procs if p.pid is not None),
        "machine": machine_seconds(),
    }


def cpu_ms(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """ms of one core for each of `n` openings, by whose CPU it was."""
    return {k: (after[k] - before[k]) * 1000 / max(1, n) for k in before}


def tally(answers: list[dict[str, Any]], t0: float) -> tuple[float, int, Counter[str]]:
    """The time from `t0` until the last opened, how many did, and the statuses not 200."""
    statuses = sum((Counter(r["statuses"]) for r in answers), Counter[str]())
    return max(r["last"] for r in answers) - t0, sum(r["opened"] for r in answers), statuses


def storm_summary(storm: list[dict[str, Any]], holding: int, t0: float) -> dict[str, Any]:
    """How long until all were back (inf when not all), how many were, with Last-Event-ID, and
    the answers that were not 200 (status 0: why, in `storm_failures`)."""
    took, reopened, statuses = tally(storm, t0)
    return {
        "storm_s": took if reopened == holding else math.inf,
        "storm_reopened": reopened,
        "storm_statuses": dict(sorted(statuses.items())),
        "storm_failures": dict(sum((Counter(r["failures"]) for r in storm), Counter())),
    }


@dataclass
class Box:
    settings: Settings
    seeded: Seeded
    db: Any
    pool_room: int  # connections the servers' pools and listeners may take in all


async def flood(clients: Clients) -> dict[str, Any]:
    """Every client opens all its streams but the warm ones at once, as fast as it can."""
    t0 = time.monotonic()
    got = await clients.all("open", 1, None, FLOOD_CONCURRENCY)
    took, opened, statuses = tally(got, t0)
    asked = sum(r["asked"] for r in got)
    return {
        "flood_s": took if opened == asked else math.inf,
        "flood_opened": opened,
        "flood_asked": asked,
        "flood_statuses": dict(sorted(statuses.items())),
        # Shed by the server, each opening then retried as EventSource would.
        "flood_shed": statuses["503"],
        "flood_shed_pct": 100 * statuses["503"] / max(1, asked),
    }


async def storms(clients: Clients, pids: list[int], holding: int) -> dict[str, Any]:
    """The reconnect storm with where its CPU went (the kernel's loopback work is charged to
    whoever runs, so part of it hides in each), then the ticket storm."""
    cpu0, t0 = cpu_split(pids, clients), time.monotonic()
    out = storm_summary(await clients.all("storm", False), holding, t0)
    out["storm_cpu_ms"] = cpu_ms(cpu0, cpu_split(pids, clients), out["storm_reopened"])
    t0 = time.monotonic()
    out["tickets"] = storm_summary(await clients.all("storm", True), holding, t0)
    for f in (out, out["tickets"]):
        f["storm_5xx"] = sum(n for k, n in f["storm_statuses"].items() if 500 <= int(k) < 600)
    return out


async def baseline(box: Box, streams: int) -> dict[str, Any]:
    """The same clients' flood and storms against a bare aiohttp app (sse_floor)."""
    port = stack.free_port()
    procs = await asyncio.to_thread(sse_floor.start, port, processes_for(streams))
    pids = [p.pid for p in procs if p.pid is not None]
    clients = Clients(port, box.seeded.tokens, streams)
    try:
        await clients.all("open", 0, 1, WARM_CONCURRENCY)
        out = await flood(clients)
        out |= await storms(clients, pids, await clients.holding())
        cli.show("  baseline (bare aiohttp)", out)
        return out
    finally:
        await clients.close()
        await asyncio.to_thread(sse_floor.stop, procs)


@contextlib.asynccontextmanager
async def served(box: Box, streams: int) -> AsyncIterator[tuple[int, Clients, dict[str, Any]]]:
    """The level's servers (their parent's pid), its client processes, and its first figures;
    all stopped after."""
    processes = processes_for(streams)
    pool = max(2, min(10, box.pool_room // processes - 1))
    # HEADER_TIMEOUT_SECONDS as long as the keep-alive: the clients share the servers' cores and
    # send their heads late in the flood (at 100,000, a third past 15 s: docs/benchmarks.md),
    # which a site's clients, on other machines, do not.
    env = stack.service_env(box.settings, SERVER_PROCESSES=str(processes), DB_POOL_MIN="1",
                            SSE_MAX_PER_USER=str(PER_USER), DB_POOL_MAX=str(pool),
                            HEADER_TIMEOUT_SECONDS="130")  # fmt: skip
    port = stack.free_port()
    # The servers' logs stay for a look after the run (the stack's folder goes with it).
    log_path = stack.CHECKOUT / ".data" / "bench" / f"box-server-{streams}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)  # a fresh checkout has no .data/bench
    log = log_path.open("wb")
    server = await asyncio.to_thread(stack.start_server, env, port, log)
    clients: Clients | None = None
    try:
        while len(await stack.listener_pids(box.db)) < processes:  # noqa: ASYNC110 - nothing announces it
            await asyncio.sleep(0.05)
        clients = Clients(port, box.seeded.tokens, streams)
        yield server.pid, clients, {
            "streams": streams, "processes": processes, "pool_max": pool, "users": streams // PER_USER, "cores": len(os.sched_getaffinity(0)),
        }  # fmt: skip
    finally:
        if clients is not None:
            await clients.close()
        await asyncio.to_thread(stack.stop, server)
        log.close()


async def run_level(box: Box, streams: int) -> dict[str, Any]:
    """The service's figures at `streams`, then the baseline's with the same clients, and the
    service's flood and storms as multiples of the baseline's."""
    async with served(box, streams) as (server_pid, clients, fig):
        warm = await clients.all("open", 0, 1, WARM_CONCURRENCY)  # one user's per client
        await asyncio.sleep(1.0)
        rss0, (tcp0, slab0) = tree_rss_kb(server_pid), kernel_kb()
        fig |= await flood(clients)
        cli.show("  flood", {k: v for k, v in fig.items() if k.startswith("flood")})
        await asyncio.sleep(3.0)  # idle: let the server settle
        rss1, (tcp1, slab1) = tree_rss_kb(server_pid), kernel_kb()
        held = await clients.holding()
        grown = held - sum(r["opened"] for r in warm)
        fig |= {"held": held, "rss_mb": rss1 / 1024, "kb_per_stream_rss": (rss1 - rss0) / grown,
                "kb_per_stream_kernel": (tcp1 - tcp0) / grown,
                "kb_per_stream_slab": (slab1 - slab0) / grown}  # fmt: skip
        cli.show("  held", {k: fig[k] for k in ("held", "rss_mb", "kb_per_stream_rss",
                                           "kb_per_stream_kernel", "kb_per_stream_slab")})  # fmt: skip

        bdr_ids = box.seeded.bdr_ids[: fig["users"]]
        fig |= await one_events(box.db, bdr_ids, clients, SINGLE_ROUNDS, PER_USER, 0.02)
        fig["event_p99_ms"] = fig["event"]["p99_ms"]
        holding = await clients.holding()
        fig |= await bursts(box.db, bdr_ids, clients, holding)
        fig |= await storms(clients, server_pids(server_pid), holding)
        cli.show(
            "  storms", {k: v for k, v in fig.items() if k.startswith("storm") or k == "tickets"}
        )
    base = fig["base"] = await baseline(box, streams)
    mine, theirs = fig["storm_s"], base["storm_s"]
    fig["storm_vs_base"] = (
        mine / theirs if math.isfinite(mine) and math.isfinite(theirs) else math.inf
    )
    cli.show("  the service ÷ the baseline", {"storm_vs_base": fig["storm_vs_base"]})
    return fig


class OneClient:
    """A `Client` in this process, driven as `Clients` drives its processes (in each of them,
    and in bench.sse)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def all(self, command: str, *args: Any) -> list[Any]:
        reply = getattr(self.client, command)(*args)
        return [await reply if asyncio.iscoroutine(reply) else reply]


async def one_events(db: Any, bdr_ids: list[Any], clients: Clients | OneClient, rounds: int,
                     per_user: int, gap_s: float) -> dict[str, Any]:  # fmt: skip
    """`rounds` times, one user's BDR changes (spread over the users of `bdr_ids`): from the
    commit to each of its `per_user` streams, and the events of another user received."""
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
        await asyncio.sleep(gap_s)
    event = spread(single) | {"samples": len(single), "expected": rounds * per_user}
    cli.show("  one event", event)
    return {"event": event, "misrouted": misrouted}


async def bursts(db: Any, bdr_ids: list[Any], clients: Clients | OneClient, holding: int
                 ) -> dict[str, Any]:  # fmt: skip
    """Every user's BDR changed in one UPDATE, BURSTS times after an untimed one (PostgreSQL's
    warm-up): when each stream had its event, from sending the UPDATE, and how many events
    were missing or doubled."""
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
            each.append({"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 0.99),
                         "all_s": max(ms) / 1000 if len(ms) == holding else math.inf})  # fmt: skip
    burst: dict[str, Any] = spread(burst_ms) | {"update_ms": statistics.median(update_ms),
                                                "delivered": delivered, "each": each}  # fmt: skip
    cli.show("  burst", burst | {"all_s": max(b["all_s"] for b in each)})
    return {"burst": burst, "burst_all_s": max(b["all_s"] for b in each), "burst_wrong": wrong}


async def run(levels: list[int]) -> dict[str, Any]:
    """Every level's figures."""
    async with stack.fresh_stack() as settings:
        ids = PublicIds(settings.sqids_alphabet)
        seeded = await seed_stream_users(
            settings.database_url, ids, settings.jwt_secret_key, max(levels) // PER_USER
        )
        budget = await read_budget(settings.database_url)
        # All the database allows, less what others hold now, this bench's own connections,
        # and some for others that may connect meanwhile.
        room = budget.allowed - budget.in_use - 15
        print(f"database: max_connections {budget.max_connections}, {budget.reserved} reserved, "
              f"{budget.in_use} in use: {room} for the servers' pools and listeners")  # fmt: skip
        box = Box(settings, seeded, await connect(settings.database_url, "pmd-bench"), room)
        results = []
        try:
            for n in levels:
                print(f"{n:,} streams, {processes_for(n)} server process(es), "
                      f"{clients_for(n)} client process(es) ...")  # fmt: skip
                results.append(await run_level(box, n))
        finally:
            await box.db.close()
    return {"levels": results, "targets": TARGETS}


def section(f: dict[str, Any]) -> dict[str, Any]:
    box: dict[str, Any] = f["box"]
    levels = box["levels"]
    top = max(levels, key=lambda lv: lv["streams"])
    kbs = [lv["kb_per_stream_rss"] for lv in levels]
    out: dict[str, Any] = box | {"top": top, "worst_kb": max(kbs), "best_kb": min(kbs)}
    if "base" in top:
        cores = top.get("cores", 2)
        taken = top["base"]["storm_cpu_ms"]["machine"]
        out |= {
            "cores": cores,
            "budget": box["targets"]["storm_s"] * cores * 1000 / top["streams"],
            "taken": taken,
            "service": top["storm_cpu_ms"]["machine"] - taken,
        }
    return out

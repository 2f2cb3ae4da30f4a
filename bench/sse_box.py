"""One box, every core: `python -m bench.sse --box [--streams 100000]`.

Not a test: it prints figures and exits 0. At four stream counts (the top one given by
`--streams`, then a half, a quarter and an eighth of it: 12,500 to 100,000 by default) it runs
`python server.py` with as many SERVER_PROCESSES as keep each under 20,000 descriptors
(STREAMS_PER_PROCESS streams at most: 1, 2, 4 and 7 processes), so the levels are also the
curve of streams against processes at about the same load per process. The streams belong to
users with PER_USER streams each (SSE_MAX_PER_USER raised to that), and are held by CLIENTS
client processes of their own, ordinary asyncio clients (`loop.create_connection`, a task a
stream), each from its own loopback source address (127.0.0.2, .3, ...: one source address
has ~28,000 ports to one destination). Each user's streams are all in one client process.

Per level it reports
- the opening flood that fills the level: after a warm baseline, every client opens all its
  streams (each without an event id: a snapshot query each) as fast as it can, with
  FLOOD_CONCURRENCY openings in flight; the time until all are held, and the answers that
  were not 200 (503s are the openings shed);
- memory per stream: the server processes' RSS (their sum, growth from a warm baseline of
  PER_USER streams per client) per stream; the kernel's TCP memory per stream from
  /proc/net/sockstat (its `mem` pages, from the same baseline) for both of a loopback
  stream's sockets together, since both ends are on this box; and the kernel's slab growth
  per stream (/proc/meminfo `Slab`: socket structures, files, epoll entries of both ends);
- one event's latency: from the committing UPDATE of one user's BDR to each of that user's
  PER_USER streams receiving it, all other streams open (SINGLE_ROUNDS users);
- the burst: every user's BDR changes in one UPDATE; time from sending it until each stream
  has its event (BURSTS bursts after an untimed one);
- a reconnect storm: every client drops all its streams at once (RST) and opens them all
  again at once, with Last-Event-ID, through the lean storm client (bench/storm_client.py);
  the time until every stream has its `connected` again, and the answers that were not 200,
  by status (a refused or reset connection counts as status 0). A client retries a refusal
  after a second or two, as EventSource does;
- a ticket storm, as browsers reconnect: every stream dropped again, then for each a POST
  /api/pmd/bdr/sse-ticket and, on the same connection, the GET with `?ticket=` (and
  `last_event_id`), through the same lean client;
- the baseline (bench/sse_floor.py): the same clients' flood, storm and ticket storm against a
  bare aiohttp app answering a fixed opening and a fixed ticket, on as many processes, in the
  same run; the service's times are given as multiples of the baseline's.

The clocks compared are CLOCK_MONOTONIC, which every process on the box shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import random
import resource
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.sse_floor import FloorServers
from bench.storm_client import Receipts, Refused, SseClient, Storm, sse_request
from pmd_service.core.db import connect, read_budget
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from support.measures import cpu_seconds, machine_seconds, percentile, tree_rss_kb
from support.seeding import seed_stream_users
from support.stack import (
    CHECKOUT,
    free_port,
    fresh_stack,
    listeners,
    service_env,
    start_server,
    stop,
)

PER_USER = 100
STREAMS_PER_PROCESS = 14_300  # 100,000 / 7: each server process stays under 20,000 descriptors
# The clients of the flood: six ordinary asyncio clients (16,667 streams each at
# 100,000), each from its own source address.
CLIENTS = 6
WARM_CONCURRENCY = 200  # openings in flight per client for the warm baseline
# The flood: openings in flight per client, as many as it can send at once. With all of them
# at once (16,667 a client at 100,000) the clients, on the same two cores as the servers, could
# not write their requests within the 15 s a server gives a new connection to send one (its
# keep-alive timeout): ~70,000 connections were closed unanswered at once, and their retries
# kept it so (12,707 of 99,400 held after 600 s, no 503 among them; 2026-11-25).
FLOOD_CONCURRENCY = 4_000
SINGLE_ROUNDS = 40
BURSTS = 3
STORM_DEADLINE_S = 300.0
OPEN_DEADLINE_S = 600.0
STEP = "UPDATE batch_download_requests SET progress_done = (progress_done + 1) % 5 WHERE id = $1"
BURST = STEP.replace("id = $1", "id = ANY($1::uuid[])")

TARGETS = {
    "streams": 100_000,
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


# --- the client processes ------------------------------------------------------------------


@dataclass(kw_only=True)
class Client(Receipts):
    """A client's streams (`per_user` for each of `users`, from `source`) and their receipts.
    Its public methods are a client process's commands (`_serve`); `bench.sse` drives one in its
    own process."""

    source: str
    port: int
    users: list[tuple[int, str]]
    per_user: int = PER_USER
    streams: list[SseClient] = field(default_factory=list)
    stormed: Storm | None = None
    # (user, token, Last-Event-ID or None) of each stream the storms reopen.
    wanted: list[tuple[int, str, bytes | None]] = field(default_factory=list)

    async def open(self, first: int, count: int, concurrency: int) -> dict[str, Any]:
        """Opens `per_user` streams for each of `count` users from the `first`, `concurrency` in
        flight, retrying refusals until OPEN_DEADLINE_S. Returns how many opened, the statuses
        that were not 200, and when the last opened."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        statuses: Counter[int] = Counter()
        deadline = time.monotonic() + OPEN_DEADLINE_S
        last = 0.0

        async def one(user: int, token: str) -> SseClient | None:
            nonlocal last
            while time.monotonic() < deadline:
                stream = SseClient(user, sse_request(self.port, token), self)
                async with gate:
                    try:
                        await loop.create_connection(
                            stream, "127.0.0.1", self.port, local_addr=(self.source, 0)
                        )
                        # No timeout of its own, as EventSource: an opening queued in the
                        # server, abandoned and retried, would only add to the queue.
                        await asyncio.wait_for(stream.ready, deadline - time.monotonic())
                        last = max(last, time.monotonic())
                        return stream
                    except Refused as exc:
                        statuses[exc.status] += 1
                    except (OSError, TimeoutError):
                        statuses[0] += 1
                        stream.drop()
                await asyncio.sleep(1 + random.random())  # as EventSource's retry would
            return None

        mine = self.users[first : first + count]
        got = await asyncio.gather(*(one(u, t) for u, t in mine for _ in range(self.per_user)))
        opened = [s for s in got if s is not None]
        self.streams += opened
        return {"opened": len(opened), "asked": len(got), "last": last,
                "statuses": {str(k): v for k, v in statuses.items()}}  # fmt: skip

    async def fill(self) -> dict[str, Any]:
        """PER_USER streams for each of its users, all opened at once by the lean client (as
        the storm reopens them, but without Last-Event-ID), then read here as the flood's
        are: a level filled in a fraction of the flood's time, for the burst alone."""
        wanted = [sse_request(self.port, t) for _, t in self.users for _ in range(self.per_user)]
        filled = Storm(self.source, self.port, wanted, OPEN_DEADLINE_S)
        out = filled.run()
        loop = asyncio.get_running_loop()
        for sock in filled.held:
            stream = SseClient(-1, b"", self)  # whose it is matters only for one event's
            stream.adopt()
            await loop.create_connection(stream, sock=sock)
            self.streams.append(stream)
        return out

    async def storm(self) -> dict[str, Any]:
        """Drops every stream at once (RST) and reopens all at once through the lean client
        (bench/storm_client.py), each as EventSource does: with the last event id it received.
        Its streams are only held after this, never read."""
        tokens = dict(self.users)
        self.wanted = [(s.user, tokens[s.user], s.last_id) for s in self.streams]
        self.close()
        await asyncio.sleep(0)
        self.dropping = False
        requests = [sse_request(self.port, t, i) for _, t, i in self.wanted]
        return self._run(Storm(self.source, self.port, requests, STORM_DEADLINE_S))

    async def tickets(self) -> dict[str, Any]:
        """Drops every stream of the storm and brings each back as a browser would: a POST for
        a ticket, then the GET with it (on the same connection), through the lean client."""
        self.close()
        await asyncio.sleep(0)
        host = f"HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
        posts = [f"POST /api/pmd/bdr/sse-ticket {host}Authorization: Bearer {t}\r\n"
                 "Content-Length: 0\r\n\r\n".encode() for _, t, _ in self.wanted]  # fmt: skip
        gets = [b"GET /api/pmd/bdr/sse?ticket={ticket}" + (b"&last_event_id=" + i if i else b"")
                + f" {host}Accept: text/event-stream\r\n\r\n".encode() for _, _, i in self.wanted]  # fmt: skip
        return self._run(Storm(self.source, self.port, posts, STORM_DEADLINE_S, then=gets))

    def _run(self, storm: Storm) -> dict[str, Any]:
        self.stormed = storm
        return storm.run() | {"resumed": sum(1 for w in self.wanted if w[2])}

    async def held(self) -> dict[str, int]:
        return {"held": len(self.streams) + len(self.stormed.held if self.stormed else []),
                "lost": self.lost}  # fmt: skip

    def close(self) -> None:
        self.dropping = True
        for s in self.streams:
            s.drop()
        self.streams = []
        if self.stormed is not None:
            self.stormed.close()


async def _serve(conn: Connection, client: Client) -> None:
    """A client process's loop: each command is a method of `client`, run with its arguments."""
    while True:
        command, args = await asyncio.to_thread(conn.recv)
        reply = getattr(client, command)(*args)
        conn.send(await reply if asyncio.iscoroutine(reply) else reply)
        if command == "close":
            return


def client_main(conn: Connection, source: str, port: int, users: list[tuple[int, str]]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = len(users) * PER_USER + 1000
    if soft < want:
        # Root may raise the hard limit too (up to fs.nr_open); the servers never get this.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    asyncio.run(_serve(conn, Client(source=source, port=port, users=users)))


class _Clients:
    """The client processes of a level, driven over pipes, each from its own source address."""

    def __init__(self, port: int, users: list[tuple[int, str]], count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        share = math.ceil(len(users) / count)
        self.shares = [users[i * share : (i + 1) * share] for i in range(count)]
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for i, mine in enumerate(self.shares):
            ours, theirs = ctx.Pipe()
            p = ctx.Process(target=client_main, args=(theirs, f"127.0.0.{2 + i}", port, mine))
            p.start()
            self.pipes.append(ours)
            self.procs.append(p)

    def owner(self, user: int) -> int:
        return next(i for i, share in enumerate(self.shares) if any(u == user for u, _ in share))

    async def ask(self, command: str, args: list[tuple[Any, ...]]) -> list[Any]:
        """Sends each client its command (with args[i]), then gathers the answers."""
        for pipe, arg in zip(self.pipes, args, strict=True):
            pipe.send((command, arg))
        return list(await asyncio.gather(*(asyncio.to_thread(p.recv) for p in self.pipes)))

    async def all(self, command: str, *args: Any) -> list[Any]:
        return await self.ask(command, [args] * len(self.pipes))

    async def holding(self) -> list[int]:
        return [r["held"] for r in await self.all("held")]

    async def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            await self.all("close")
        for p in self.procs:
            await asyncio.to_thread(p.join, 30)
            if p.is_alive():
                p.kill()


# --- measuring -----------------------------------------------------------------------------


def proc_number(path: str, line: str, name: str) -> int:
    """The number after `name` on the line of /proc file `path` that starts with `line`."""
    for text in Path(path).read_text().splitlines():
        if text.startswith(line):
            parts = text.split()
            return int(parts[parts.index(name) + 1])
    raise RuntimeError(f"no {line} in {path}")


def kernel_kb() -> tuple[float, int]:
    """The machine's TCP buffers (/proc/net/sockstat `mem` pages) and slab, in KB."""
    pages = proc_number("/proc/net/sockstat", "TCP:", "mem")
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024, proc_number("/proc/meminfo", "Slab:", "Slab:")


def _server_pids(pid: int) -> list[int]:
    """The server's parent process and the SERVER_PROCESSES under it."""
    return [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]


def _postgres_pids() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip() == "postgres":
                    pids.append(int(d.name))
    return pids


def _cpu_split(servers: list[int], clients: _Clients) -> dict[str, float]:
    """CPU seconds so far of the servers, PostgreSQL, the client processes, and the machine."""
    return {
        "servers": sum(cpu_seconds(p) for p in servers),
        "database": sum(cpu_seconds(p) for p in _postgres_pids()),
        "clients": sum(cpu_seconds(p.pid) for p in clients.procs if p.pid is not None),
        "machine": machine_seconds()[0],
    }


def _cpu_ms(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """ms of one core for each of `n` openings, by whose CPU it was."""
    return {k: (after[k] - before[k]) * 1000 / max(1, n) for k in before}


def _tally(answers: list[dict[str, Any]], t0: float) -> tuple[float, int, Counter[str]]:
    """The clients' answers to an opening round: the time from `t0` until the last opened,
    how many did, and the statuses that were not 200."""
    statuses = sum((Counter(r["statuses"]) for r in answers), Counter[str]())
    return max(r["last"] for r in answers) - t0, sum(r["opened"] for r in answers), statuses


def storm_summary(storm: list[dict[str, Any]], holding: int, t0: float) -> dict[str, Any]:
    """The storm's figures: how long until all were back (inf when not all), how many were,
    and the answers that were not 200 (status 0: why, in `storm_failures`)."""
    took, reopened, statuses = _tally(storm, t0)
    return {
        "storm_s": took if reopened == holding else math.inf,
        "storm_reopened": reopened,
        # Streams that came back with Last-Event-ID (the others had received no event id).
        "storm_resumed": sum(r.get("resumed", 0) for r in storm),
        "storm_statuses": dict(sorted(statuses.items())),
        "storm_failures": dict(sum((Counter(r.get("failures", {})) for r in storm), Counter())),
    }


def _5xx(statuses: dict[str, int]) -> int:
    return sum(n for k, n in statuses.items() if 500 <= int(k) < 600)


def processes_for(streams: int) -> int:
    return max(1, math.ceil(streams / STREAMS_PER_PROCESS))


def clients_for(streams: int) -> int:
    return min(CLIENTS, max(1, streams // PER_USER))


def levels_for(top: int) -> list[int]:
    return sorted({max(PER_USER, top // d // PER_USER * PER_USER) for d in (8, 4, 2, 1)})


@dataclass
class Box:
    """What a level's run needs from the stack: settings, seeded users, a connection."""

    settings: Settings
    tokens: list[str]
    bdr_ids: list[Any]
    db: Any
    pool_room: int  # connections the servers' pools and listeners may take in all
    root: Path  # the checkout whose server.py runs (another's: `--server-root`)


async def _flood(clients: _Clients, pids: list[int]) -> dict[str, Any]:
    """Every client opens all its streams but the warm ones at once, as fast as it can."""
    cpu0, t0 = _cpu_split(pids, clients), time.monotonic()
    got = await clients.ask("open", [(1, len(s) - 1, FLOOD_CONCURRENCY) for s in clients.shares])
    cpu1 = _cpu_split(pids, clients)
    took, opened, statuses = _tally(got, t0)
    asked = sum(r["asked"] for r in got)
    return {
        "flood_s": took if opened == asked else math.inf,
        "flood_opened": opened,
        "flood_asked": asked,
        "flood_statuses": dict(sorted(statuses.items())),
        # Answered 503: shed by the server, each opening then retried as EventSource would.
        "flood_shed": statuses["503"],
        "flood_shed_pct": 100 * statuses["503"] / max(1, asked),
        "flood_cpu_ms": _cpu_ms(cpu0, cpu1, opened),
    }


async def _storms(clients: _Clients, pids: list[int], holding: int) -> dict[str, Any]:
    """The reconnect storm, then the ticket storm, with the CPU split of the first."""
    cpu0, t0 = _cpu_split(pids, clients), time.monotonic()
    out = storm_summary(await clients.all("storm"), holding, t0)
    # Where an opening's CPU goes (ms of one core per reopened stream), to say what bounds
    # the storm: the servers, the database, the clients, or the rest (the kernel's softirq
    # work for loopback TCP is charged to whoever is running, so part of it hides in each).
    out["storm_cpu_ms"] = _cpu_ms(cpu0, _cpu_split(pids, clients), out["storm_reopened"])
    out["storm_5xx"] = _5xx(out["storm_statuses"])
    t0 = time.monotonic()
    tickets = storm_summary(await clients.all("tickets"), holding, t0)
    return out | {"tickets": tickets | {"storm_5xx": _5xx(tickets["storm_statuses"])}}


def _storm_line(name: str, f: dict[str, Any], holding: int) -> str:
    why = "".join(f"{k} {v:,} " for k, v in f["storm_failures"].items())
    return (f"  {name}: {f['storm_reopened']:,}/{holding:,} back ({f['storm_resumed']:,} with "
            f"Last-Event-ID) in {f['storm_s']:.1f} s; not 200: {why}"
            f"{f['storm_statuses'] or 'none'}")  # fmt: skip


async def _baseline(box: Box, streams: int) -> dict[str, Any]:
    """The same clients' flood and storms against a bare aiohttp app (sse_floor)."""
    port = free_port()
    base = await asyncio.to_thread(FloorServers, port, processes_for(streams))
    users = [(u, box.tokens[u]) for u in range(streams // PER_USER)]
    clients = _Clients(port, users, clients_for(streams))
    try:
        await clients.all("open", 0, 1, WARM_CONCURRENCY)
        out = await _flood(clients, base.pids)
        return out | await _storms(clients, base.pids, sum(await clients.holding()))
    finally:
        await clients.close()
        await asyncio.to_thread(base.stop)


@contextlib.asynccontextmanager
async def _served(box: Box, streams: int) -> AsyncIterator[tuple[int, _Clients, dict[str, Any]]]:
    """The level's server processes (their parent's pid) and client processes, and the
    level's first figures; all stopped after."""
    processes = processes_for(streams)
    users = streams // PER_USER
    pool = max(2, min(10, box.pool_room // processes - 1))
    env = service_env(box.settings, SERVER_PROCESSES=str(processes),
                      SSE_MAX_PER_USER=str(PER_USER), DB_POOL_MAX=str(pool), DB_POOL_MIN="1")  # fmt: skip
    port = free_port()
    # The servers' logs stay for a look after the run (the stack's folder goes with it).
    log = (CHECKOUT / ".data" / "bench" / f"box-server-{streams}.log").open("wb")
    server = await asyncio.to_thread(start_server, env, port, log, box.root)
    clients: _Clients | None = None
    try:
        while await listeners(box.db) < processes:  # noqa: ASYNC110 - nothing announces it
            await asyncio.sleep(0.05)
        clients = _Clients(port, [(u, box.tokens[u]) for u in range(users)], clients_for(streams))
        fig: dict[str, Any] = {"streams": streams, "processes": processes,
                               "clients": len(clients.pipes), "pool_max": pool, "users": users,
                               "cores": len(os.sched_getaffinity(0))}  # fmt: skip
        yield server.pid, clients, fig
    finally:
        if clients is not None:
            await clients.close()
        await asyncio.to_thread(stop, server)
        log.close()


async def run_level(box: Box, streams: int) -> dict[str, Any]:
    """The service's figures at `streams`, then the baseline's (a bare aiohttp app) with the
    same clients, and the service's flood and storms as multiples of the baseline's."""
    async with _served(box, streams) as (server_pid, clients, fig):
        # Warm: one user's streams per client, then the baselines.
        started = time.monotonic()
        warm = await clients.all("open", 0, 1, WARM_CONCURRENCY)
        warm_streams = sum(r["opened"] for r in warm)
        await asyncio.sleep(1.0)
        rss0, (tcp0, slab0) = tree_rss_kb(server_pid), kernel_kb()
        fig |= await _flood(clients, _server_pids(server_pid))
        fig["connect_s"] = time.monotonic() - started
        fig["open_statuses"] = dict(
            sum((Counter(r["statuses"]) for r in warm), Counter(fig["flood_statuses"]))
        )
        print(f"  flood: {fig['flood_opened']:,}/{fig['flood_asked']:,} held in "
              f"{fig['flood_s']:.1f} s; shed (503) {fig['flood_shed']:,} "
              f"({fig['flood_shed_pct']:.2f}%); not 200: {fig['flood_statuses'] or 'none'}",
              flush=True)  # fmt: skip
        await asyncio.sleep(3.0)  # idle: let the server settle
        rss1, (tcp1, slab1) = tree_rss_kb(server_pid), kernel_kb()
        held = sum(await clients.holding())
        grown = held - warm_streams
        fig |= {"held": held, "rss_mb": rss1 / 1024, "kb_per_stream_rss": (rss1 - rss0) / grown,
                "kb_per_stream_kernel": (tcp1 - tcp0) / grown,
                "kb_per_stream_slab": (slab1 - slab0) / grown}  # fmt: skip
        print(f"  {held:,} held in {fig['connect_s']:.0f} s; {fig['kb_per_stream_rss']:.1f} KB "
              f"RSS, {fig['kb_per_stream_kernel']:.2f} KB TCP, {fig['kb_per_stream_slab']:.1f} KB "
              "slab a stream", flush=True)  # fmt: skip

        # One event: a user's BDR changes; from the commit to each of its PER_USER streams.
        single: list[float] = []
        fig["misrouted"] = 0
        for i in range(SINGLE_ROUNDS):
            user = (i * 7919) % fig["users"]  # spread over the users
            owner = clients.owner(user)
            await clients.ask("arm", [(user, PER_USER if c == owner else 0)
                                      for c in range(len(clients.pipes))])  # fmt: skip
            t0 = time.monotonic()
            await box.db.execute(STEP, box.bdr_ids[user])
            for r in await clients.all("wait", 10.0):
                single += [(at - t0) * 1000 for at in r["times"]]
                fig["misrouted"] += r["misrouted"]
            await asyncio.sleep(0.02)
        fig["event"] = spread(single) | {"samples": len(single),
                                         "expected": SINGLE_ROUNDS * PER_USER}  # fmt: skip
        fig["event_p99_ms"] = fig["event"]["p99_ms"]
        print(f"  one event: p50 {fig['event']['p50_ms']:.1f} ms, p99 {fig['event_p99_ms']:.1f} ms",
              flush=True)  # fmt: skip

        holding = await clients.holding()
        fig |= await _bursts(box, clients, fig["users"], holding)
        fig |= await _storms(clients, _server_pids(server_pid), sum(holding))
        fig["lost"] = sum(r["lost"] for r in await clients.all("held"))
        print(_storm_line("storm", fig, sum(holding)) + "; CPU ms an opening: "
              + ", ".join(f"{k} {v:.2f}" for k, v in fig["storm_cpu_ms"].items()))  # fmt: skip
        print(_storm_line("ticket storm", fig["tickets"], sum(holding)), flush=True)
    base = fig["base"] = await _baseline(box, streams)
    for key, mine, theirs in (
        ("flood_vs_base", fig["flood_s"], base["flood_s"]),
        ("storm_vs_base", fig["storm_s"], base["storm_s"]),
        ("tickets_vs_base", fig["tickets"]["storm_s"], base["tickets"]["storm_s"]),
    ):
        fig[key] = mine / theirs if math.isfinite(mine) and math.isfinite(theirs) else math.inf
    print(f"  baseline (bare aiohttp): flood {base['flood_s']:.1f} s ({fig['flood_vs_base']:.2f}× "
          f"that for the service), storm {base['storm_s']:.1f} s ({fig['storm_vs_base']:.2f}×), "
          f"ticket storm {base['tickets']['storm_s']:.1f} s ({fig['tickets_vs_base']:.2f}×); "
          "CPU ms an opening in the storm: "
          + ", ".join(f"{k} {v:.2f}" for k, v in base["storm_cpu_ms"].items()), flush=True)  # fmt: skip
    return fig


async def _bursts(box: Box, clients: _Clients, users: int, holding: list[int]) -> dict[str, Any]:
    """Every user's BDR changed in one UPDATE, BURSTS times after an untimed one: when each
    stream had its event, from sending the UPDATE."""
    burst_ms: list[float] = []
    each: list[dict[str, float]] = []
    delivered: list[str] = []
    update_ms: list[float] = []
    for i in range(BURSTS + 1):
        await clients.ask("arm", [(-1, h) for h in holding])
        t0 = time.monotonic()
        await box.db.execute(BURST, box.bdr_ids[:users])
        committed = time.monotonic()
        ms = [(at - t0) * 1000 for r in await clients.all("wait", 30.0) for at in r["times"]]
        await asyncio.sleep(0.5)
        if i == 0:
            continue  # warms PostgreSQL up
        update_ms.append((committed - t0) * 1000)
        burst_ms += ms
        delivered.append(f"{len(ms)}/{sum(holding)}")
        all_s = max(ms) / 1000 if len(ms) == sum(holding) else math.inf
        each.append({"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 0.99),
                     "all_s": all_s})  # fmt: skip
    worst = max(b["all_s"] for b in each)
    burst: dict[str, Any] = spread(burst_ms)
    print(f"  burst: p50 {burst['p50_ms']:.0f} ms, p99 {burst['p99_ms']:.0f} ms, all "
          f"{worst:.2f} s ({', '.join(delivered)}); each: "
          + ", ".join(f"{b['all_s']:.2f} s" for b in each), flush=True)  # fmt: skip
    burst |= {"update_ms": statistics.median(update_ms), "delivered": delivered, "each": each}
    return {"burst": burst, "burst_all_s": worst}


async def _burst_level(box: Box, streams: int) -> dict[str, Any]:
    """The burst alone (`--burst-only`): the level filled by the lean client, then the bursts;
    the load average before and after, as other work on the box moves the figures."""
    load = os.getloadavg()
    async with _served(box, streams) as (_, clients, fig):
        t0 = time.monotonic()
        fig["fill"] = storm_summary(await clients.all("fill"), streams, t0)
        holding = await clients.holding()
        print(f"  filled: {sum(holding):,} held in {fig['fill']['storm_s']:.1f} s; not 200: "
              f"{fig['fill']['storm_statuses'] or 'none'}", flush=True)  # fmt: skip
        fig |= await _bursts(box, clients, fig["users"], holding)
    return fig | {"held": sum(holding), "load_before": load, "load_after": os.getloadavg()}


async def run(
    levels: list[int], burst_only: bool = False, root: Path | None = None
) -> dict[str, Any]:
    """Every level's figures (`burst_only`: the burst's alone), the server run from `root`'s
    checkout (this one's by default) on a database its migrations made."""
    root = (root or CHECKOUT).resolve()
    async with fresh_stack(root / "migrations") as settings:
        ids = PublicIds(settings.sqids_alphabet)
        seeded = await seed_stream_users(
            settings.database_url, ids, settings.jwt_secret_key, max(levels) // PER_USER
        )
        budget = await read_budget(settings.database_url)
        # What the servers may take: all the database allows, less what others hold now and
        # some for this bench's own connections and for others that may connect meanwhile.
        room = budget.allowed - budget.in_use - 15
        print(f"database: max_connections {budget.max_connections}, {budget.reserved} reserved, "
              f"{budget.in_use} in use: {room} for the servers' pools and listeners", flush=True)  # fmt: skip
        db = await connect(settings.database_url, "pmd-bench")
        box = Box(settings, seeded.tokens, seeded.bdr_ids, db, room, root)
        results = []
        try:
            for n in levels:
                print(f"{n:,} streams, {processes_for(n)} server process(es), "
                      f"{clients_for(n)} client process(es) ...", flush=True)  # fmt: skip
                results.append(await (_burst_level if burst_only else run_level)(box, n))
        finally:
            await db.close()
    return {"levels": results, "targets": TARGETS, "per_user": PER_USER,
            "max_connections": budget.max_connections}  # fmt: skip

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
import socket
import statistics
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.sse_floor import FloorServers, storm_summary
from bench.storm_client import Storm

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

CONNECTED = b"event: connected"
UPDATE = b"event: bdr_update\nid: "
LINGER_RST = struct.pack("ii", 1, 0)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the client processes ------------------------------------------------------------------


class _Stream(asyncio.Protocol):
    """One subscriber: its answer's status, then every live event's receipt time."""

    __slots__ = ("client", "last_id", "opened", "request", "tail", "token", "transport", "user")

    def __init__(self, client: _Client, user: int, token: str, last_id: bytes | None) -> None:
        self.client = client
        self.user = user
        self.token = token
        self.request = client.request(token, last_id)
        self.last_id = last_id  # the newest `id:` received: sent back as Last-Event-ID
        self.opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.opened.done():  # one the lean client opened (`fill`) is only read here
            transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.tail + data
        if not self.opened.done():
            if len(buf) < 12:
                self.tail = buf
                return
            if not buf.startswith(b"HTTP/1.1 200"):
                self.opened.set_result(int(buf[9:12]))
                assert self.transport is not None
                self.transport.abort()
                return
            at = buf.find(CONNECTED)
            if at < 0 or buf.find(b"\n\n", at) < 0:
                self.tail = buf
                return
            self.opened.set_result(200)
            self._note_id(buf)
            buf = buf[at + len(CONNECTED) :]
        else:
            self._note_id(buf)
        count = buf.count(UPDATE)
        if count:
            self.client.received(self.user, now, count)
        self.tail = buf[-(len(UPDATE) - 1) :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(0)
        elif (
            not self.opened.cancelled() and self.opened.result() == 200 and not self.client.dropping
        ):
            self.client.lost += 1

    def _note_id(self, buf: bytes) -> None:
        at = buf.rfind(b"\nid: ")
        if at >= 0 and (end := buf.find(b"\n", at + 5)) > 0:
            self.last_id = buf[at + 5 : end]

    def __call__(self) -> _Stream:
        """Its own protocol factory (a lambda in the retry loop would bind the wrong one)."""
        return self

    def drop(self) -> None:
        """Gone at once, with a reset: no FIN handshake, no TIME_WAIT holding the port."""
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            self.transport.abort()


@dataclass
class _Client:
    """A client process's state: its streams, and the receipts since the last `arm`."""

    source: str
    port: int
    users: list[tuple[int, str]]
    streams: list[_Stream] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    target: int = -1  # the user whose event is awaited (-1: every user's)
    misrouted: int = 0
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    dropping: bool = False
    lost: int = 0
    stormed: Storm | None = None
    stormed_wanted: list[tuple[int, str, bytes | None]] = field(default_factory=list)

    def received(self, user: int, at: float, count: int) -> None:
        if self.target >= 0 and user != self.target:
            self.misrouted += count
            return
        self.times.extend([at] * count)
        if len(self.times) >= self.expected:
            self.done.set()

    def request(self, token: str, last_id: bytes | None) -> bytes:
        resume = b"Last-Event-ID: " + last_id + b"\r\n" if last_id else b""
        return (
            (
                f"GET /api/pmd/bdr/sse HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n"
            ).encode()
            + resume
            + b"\r\n"
        )

    async def open(
        self, users: list[tuple[int, str]], concurrency: int, within_s: float
    ) -> dict[str, Any]:
        """Opens PER_USER streams for each of `users` (see `reopen`)."""
        wanted: list[tuple[int, str, bytes | None]] = [
            (u, t, None) for u, t in users for _ in range(PER_USER)
        ]
        return await self.reopen(wanted, concurrency, within_s)

    async def fill(self) -> dict[str, Any]:
        """PER_USER streams for each of its users, all opened at once by the lean client (as
        the storm reopens them, but without Last-Event-ID), then read here as the flood's
        are: a level filled in a fraction of the flood's time, for the burst alone."""
        wanted = [self.request(t, None) for _, t in self.users for _ in range(PER_USER)]
        filled = Storm(self.source, self.port, wanted, OPEN_DEADLINE_S)
        out = filled.run()
        loop = asyncio.get_running_loop()
        for sock in filled.held:
            stream = _Stream(self, -1, "", None)  # whose it is matters only for one event's
            stream.opened.set_result(200)
            await loop.create_connection(stream, sock=sock)
            self.streams.append(stream)
        return out

    async def reopen(
        self, wanted: list[tuple[int, str, bytes | None]], concurrency: int, within_s: float
    ) -> dict[str, Any]:
        """Opens a stream for each (user, token, Last-Event-ID or None), retrying refusals
        until the deadline. Returns how many opened, the statuses that were not 200, and
        when the last opened."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        statuses: Counter[int] = Counter()
        deadline = time.monotonic() + within_s
        last = 0.0

        async def one(user: int, token: str, last_id: bytes | None) -> _Stream | None:
            nonlocal last
            while time.monotonic() < deadline:
                stream = _Stream(self, user, token, last_id)
                async with gate:
                    try:
                        await loop.create_connection(
                            stream, "127.0.0.1", self.port, local_addr=(self.source, 0)
                        )
                        # No timeout of its own, as EventSource: an opening queued in the
                        # server, abandoned and retried, would only add to the queue.
                        status = await asyncio.wait_for(stream.opened, deadline - time.monotonic())
                    except (OSError, TimeoutError):
                        status = 0
                        stream.drop()
                if status == 200:
                    last = max(last, time.monotonic())
                    return stream
                statuses[status] += 1
                await asyncio.sleep(1 + random.random())  # as EventSource's retry would
            return None

        got = await asyncio.gather(*(one(*w) for w in wanted))
        opened = [s for s in got if s is not None]
        self.streams += opened
        return {
            "opened": len(opened),
            "asked": len(got),
            "statuses": {str(k): v for k, v in statuses.items()},
            "last": last,
        }

    def arm(self, target: int, expected: int) -> None:
        self.times = []
        self.target = target
        self.misrouted = 0
        self.expected = expected
        self.done = asyncio.Event()
        if expected == 0:
            self.done.set()

    async def wait(self, within_s: float) -> dict[str, Any]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), within_s)
        return {"times": self.times, "misrouted": self.misrouted}

    async def storm(self) -> dict[str, Any]:
        self.dropping = True
        # Each comes back as EventSource does: with the last event id it received.
        wanted = [(s.user, s.token, s.last_id) for s in self.streams]
        for s in self.streams:
            s.drop()
        self.streams = []
        await asyncio.sleep(0)
        self.dropping = False
        # All at once (every opening in flight), from the lean client (bench/storm_client.py):
        # its streams are only held after this, never read.
        self.stormed = Storm(
            self.source, self.port, [self.request(t, i) for _, t, i in wanted], STORM_DEADLINE_S
        )
        self.stormed_wanted = wanted
        return self.stormed.run() | {"resumed": sum(1 for w in wanted if w[2])}

    async def ticket_storm(self) -> dict[str, Any]:
        """Drops every stream of the storm and brings each back as a browser would: a POST for
        a ticket, then the GET with it (on the same connection), through the lean client."""
        wanted = self.stormed_wanted
        assert self.stormed is not None
        self.stormed.close()
        await asyncio.sleep(0)
        posts, gets = [], []
        for _, token, last_id in wanted:
            posts.append(
                f"POST /api/pmd/bdr/sse-ticket HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n".encode()
            )
            resume = b"&last_event_id=" + last_id if last_id else b""
            gets.append(
                b"GET /api/pmd/bdr/sse?ticket={ticket}"
                + resume
                + b" HTTP/1.1\r\n"
                + f"Host: 127.0.0.1:{self.port}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
        self.stormed = Storm(self.source, self.port, posts, STORM_DEADLINE_S, then=gets)
        return self.stormed.run() | {"resumed": sum(1 for w in wanted if w[2])}

    @property
    def held(self) -> int:
        return len(self.streams) + (len(self.stormed.held) if self.stormed else 0)

    def close(self) -> None:
        self.dropping = True
        for s in self.streams:
            s.drop()
        self.streams = []
        if self.stormed is not None:
            self.stormed.close()


async def _serve(conn: Connection, client: _Client) -> None:
    while True:
        command, args = await asyncio.to_thread(conn.recv)
        reply: Any = None
        if command == "open":
            first, count, concurrency = args
            mine = client.users[first : first + count]
            reply = await client.open(mine, concurrency, OPEN_DEADLINE_S)
        elif command == "arm":
            client.arm(*args)
        elif command == "wait":
            reply = await client.wait(args)
        elif command == "storm":
            reply = await client.storm()
        elif command == "fill":
            reply = await client.fill()
        elif command == "tickets":
            reply = await client.ticket_storm()
        elif command == "held":
            reply = {"held": client.held, "lost": client.lost}
        elif command == "close":
            client.close()
            conn.send(None)
            return
        conn.send(reply)


def client_main(conn: Connection, source: str, port: int, users: list[tuple[int, str]]) -> None:
    """A client process: PER_USER streams for each of `users`, from `source`, on command."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = len(users) * PER_USER + 1000
    if soft < want:
        # Root may raise the hard limit too (up to fs.nr_open); the servers never get this.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    asyncio.run(_serve(conn, _Client(source, port, users)))


class _Clients:
    """The client processes of a level, driven over pipes."""

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

    async def ask(self, command: str, args: list[Any]) -> list[Any]:
        """Sends each client its command (args[i]), then gathers the answers."""
        for pipe, arg in zip(self.pipes, args, strict=True):
            pipe.send((command, arg))
        return list(await asyncio.gather(*(asyncio.to_thread(p.recv) for p in self.pipes)))

    async def all(self, command: str, arg: Any = None) -> list[Any]:
        return await self.ask(command, [arg] * len(self.pipes))

    async def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            await self.all("close")
        for p in self.procs:
            await asyncio.to_thread(p.join, 30)
            if p.is_alive():
                p.kill()


# --- measuring -----------------------------------------------------------------------------


def sockstat_tcp_pages() -> int:
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            parts = line.split()
            return int(parts[parts.index("mem") + 1])
    raise RuntimeError("no TCP line in /proc/net/sockstat")


def slab_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    raise RuntimeError("no Slab in /proc/meminfo")


def servers_rss_kb(pid: int) -> int:
    """RSS of the server: its parent process and the SERVER_PROCESSES under it."""
    from support.measures import rss_kb

    return sum(rss_kb(p) for p in _server_pids(pid))


def _postgres_pids() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip() == "postgres":
                    pids.append(int(d.name))
    return pids


def _server_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(c) for c in children)]


def _cpu_split(servers: list[int], clients: _Clients) -> dict[str, float]:
    """CPU seconds so far of the servers, PostgreSQL, the client processes, and the machine."""
    from support.measures import cpu_seconds, machine_seconds

    return {
        "servers": sum(cpu_seconds(p) for p in servers),
        "database": sum(cpu_seconds(p) for p in _postgres_pids()),
        "clients": sum(cpu_seconds(p.pid) for p in clients.procs if p.pid is not None),
        "machine": machine_seconds()[0],
    }


def processes_for(streams: int) -> int:
    return max(1, math.ceil(streams / STREAMS_PER_PROCESS))


def clients_for(streams: int) -> int:
    return min(CLIENTS, max(1, streams // PER_USER))


def levels_for(top: int) -> list[int]:
    return sorted({max(PER_USER, top // d // PER_USER * PER_USER) for d in (8, 4, 2, 1)})


@dataclass
class Box:
    """What a level's run needs from the stack: settings, seeded users, a connection."""

    settings: Any
    tokens: list[str]
    bdr_ids: list[Any]
    db: Any
    pool_room: int  # connections the servers' pools and listeners may take in all
    log_dir: Path
    root: Path  # the checkout whose server.py runs (another's: `--server-root`)


async def run_level(box: Box, streams: int) -> dict[str, Any]:
    """The service's figures at `streams`, then the baseline's (a bare aiohttp app) with the
    same clients, and the service's flood and storms as multiples of the baseline's."""
    fig = await _service_level(box, streams)
    base = await _baseline(box, streams)
    fig["base"] = base
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


async def _flood(clients: _Clients, pids: list[int]) -> dict[str, Any]:
    """Every client opens all its streams but the warm ones at once, as fast as it can."""
    cpu0 = _cpu_split(pids, clients)
    t0 = time.monotonic()
    got = await clients.ask("open", [(1, len(s) - 1, FLOOD_CONCURRENCY) for s in clients.shares])
    cpu1 = _cpu_split(pids, clients)
    statuses = sum((Counter(r["statuses"]) for r in got), Counter())
    opened, asked = sum(r["opened"] for r in got), sum(r["asked"] for r in got)
    return {
        "flood_s": max(r["last"] for r in got) - t0 if opened == asked else math.inf,
        "flood_opened": opened,
        "flood_asked": asked,
        "flood_statuses": {str(k): v for k, v in sorted(statuses.items())},
        # Answered 503: shed by the server, each opening then retried as EventSource would.
        "flood_shed": statuses.get("503", 0),
        "flood_shed_pct": 100 * statuses.get("503", 0) / max(1, asked),
        "flood_cpu_ms": {k: (cpu1[k] - cpu0[k]) * 1000 / max(1, opened) for k in cpu0},
    }


async def _storms(clients: _Clients, pids: list[int], holding: int) -> dict[str, Any]:
    """The reconnect storm, then the ticket storm, with the CPU split of the first."""
    cpu0 = _cpu_split(pids, clients)
    t0 = time.monotonic()
    out = storm_summary(await clients.all("storm"), holding, t0)
    cpu1 = _cpu_split(pids, clients)
    # Where an opening's CPU goes (ms of one core per reopened stream), to say what bounds
    # the storm: the servers, the database, the clients, or the rest (the kernel's softirq
    # work for loopback TCP is charged to whoever is running, so part of it hides in each).
    reopened = max(1, out["storm_reopened"])
    out["storm_cpu_ms"] = {k: (cpu1[k] - cpu0[k]) * 1000 / reopened for k in cpu0}
    out["storm_5xx"] = sum(v for k, v in out["storm_statuses"].items() if 500 <= int(k) < 600)
    t0 = time.monotonic()
    tickets = storm_summary(await clients.all("tickets"), holding, t0)
    tickets["storm_5xx"] = sum(
        v for k, v in tickets["storm_statuses"].items() if 500 <= int(k) < 600
    )
    out["tickets"] = tickets
    return out


async def _baseline(box: Box, streams: int) -> dict[str, Any]:
    """The same clients' flood and storms against a bare aiohttp app (sse_floor)."""
    from support.stack import free_port

    port = free_port()
    base = await asyncio.to_thread(FloorServers, port, processes_for(streams))
    users = [(u, box.tokens[u]) for u in range(streams // PER_USER)]
    clients = _Clients(port, users, clients_for(streams))
    try:
        await clients.all("open", (0, 1, WARM_CONCURRENCY))
        out = await _flood(clients, base.pids)
        holding = sum(r["held"] for r in await clients.all("held"))
        return out | await _storms(clients, base.pids, holding)
    finally:
        await clients.close()
        await asyncio.to_thread(base.stop)


@contextlib.asynccontextmanager
async def _served(box: Box, streams: int) -> AsyncIterator[tuple[int, _Clients, dict[str, Any]]]:
    """The level's server processes (their parent's pid) and client processes, and the
    level's first figures; all stopped after."""
    from support.stack import free_port, listeners, service_env, start_server, stop

    processes = processes_for(streams)
    users = streams // PER_USER
    pool = max(2, min(10, box.pool_room // processes - 1))
    env = service_env(
        box.settings,
        SERVER_PROCESSES=str(processes),
        SSE_MAX_PER_USER=str(PER_USER),
        DB_POOL_MAX=str(pool),
        DB_POOL_MIN="1",
    )
    port = free_port()
    log = (box.log_dir / f"box-server-{streams}.log").open("wb")
    server = await asyncio.to_thread(start_server, env, port, log, box.root)
    clients: _Clients | None = None
    try:
        while await listeners(box.db) < processes:  # noqa: ASYNC110 - nothing announces it
            await asyncio.sleep(0.05)
        mine = [(u, box.tokens[u]) for u in range(users)]
        clients = _Clients(port, mine, clients_for(streams))
        n = len(clients.pipes)
        fig: dict[str, Any] = {"streams": streams, "processes": processes, "clients": n,
                               "pool_max": pool, "users": users,
                               "cores": len(os.sched_getaffinity(0))}  # fmt: skip
        yield server.pid, clients, fig
    finally:
        if clients is not None:
            await clients.close()
        await asyncio.to_thread(stop, server)
        log.close()


async def _service_level(box: Box, streams: int) -> dict[str, Any]:
    async with _served(box, streams) as (server_pid, clients, fig):
        users, n = fig["users"], fig["clients"]
        # Warm: one user's streams per client, then the baselines.
        started = time.monotonic()
        warm = await clients.all("open", (0, 1, WARM_CONCURRENCY))
        warm_streams = sum(r["opened"] for r in warm)
        await asyncio.sleep(1.0)
        rss0, tcp0, slab0 = servers_rss_kb(server_pid), sockstat_tcp_pages(), slab_kb()
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
        rss1, tcp1, slab1 = servers_rss_kb(server_pid), sockstat_tcp_pages(), slab_kb()
        held = sum(r["held"] for r in await clients.all("held"))
        grown = held - warm_streams
        page_kb = os.sysconf("SC_PAGE_SIZE") / 1024
        fig |= {
            "held": held,
            "rss_mb": rss1 / 1024,
            "kb_per_stream_rss": (rss1 - rss0) / grown,
            "kb_per_stream_kernel": (tcp1 - tcp0) * page_kb / grown,
            "kb_per_stream_slab": (slab1 - slab0) / grown,
        }
        print(f"  {held:,} held in {fig['connect_s']:.0f} s; {fig['kb_per_stream_rss']:.1f} KB "
              f"RSS, {fig['kb_per_stream_kernel']:.2f} KB TCP, {fig['kb_per_stream_slab']:.1f} KB "
              "slab a stream", flush=True)  # fmt: skip

        step = "UPDATE batch_download_requests SET progress_done = (progress_done + 1) % 5 WHERE id = $1"
        single: list[float] = []
        misrouted = 0
        for i in range(SINGLE_ROUNDS):
            user = (i * 7919) % users
            owner = clients.owner(user)
            await clients.ask("arm", [(user, PER_USER if c == owner else 0) for c in range(n)])
            t0 = time.monotonic()
            await box.db.execute(step, box.bdr_ids[user])
            for r in await clients.all("wait", 10.0):
                single += [(at - t0) * 1000 for at in r["times"]]
                misrouted += r["misrouted"]
            await asyncio.sleep(0.02)
        fig["event"] = {"p50_ms": statistics.median(single), "p99_ms": _percentile(single, 0.99),
                        "max_ms": max(single), "samples": len(single),
                        "expected": SINGLE_ROUNDS * PER_USER}  # fmt: skip
        fig["event_p99_ms"] = fig["event"]["p99_ms"]
        print(f"  one event: p50 {fig['event']['p50_ms']:.1f} ms, p99 {fig['event_p99_ms']:.1f} ms",
              flush=True)  # fmt: skip

        holding = [r["held"] for r in await clients.all("held")]
        fig |= await _bursts(box, clients, users, holding)
        fig |= await _storms(clients, _server_pids(server_pid), sum(holding))
        reopened = fig["storm_reopened"]
        tickets = fig["tickets"]
        after = await clients.all("held")
        fig["lost"] = sum(r["lost"] for r in after)
        fig["misrouted"] = misrouted
        print(f"  storm: {reopened:,}/{sum(holding):,} back ({fig['storm_resumed']:,} with "
              f"Last-Event-ID) in {fig['storm_s']:.1f} s; not 200: "
              f"{' '.join(f'{k} {v:,}' for k, v in fig['storm_failures'].items())} "
              f"{fig['storm_statuses'] or 'none'}; CPU ms an opening: "
              + ", ".join(f"{k} {v:.2f}" for k, v in fig["storm_cpu_ms"].items()), flush=True)  # fmt: skip
        print(f"  ticket storm: {tickets['storm_reopened']:,}/{sum(holding):,} back in "
              f"{tickets['storm_s']:.1f} s; not 200: "
              f"{' '.join(f'{k} {v:,}' for k, v in tickets['storm_failures'].items())} "
              f"{tickets['storm_statuses'] or 'none'}", flush=True)  # fmt: skip
        return fig


async def _bursts(box: Box, clients: _Clients, users: int, holding: list[int]) -> dict[str, Any]:
    """Every user's BDR changed in one UPDATE, BURSTS times after an untimed one: when each
    stream had its event, from sending the UPDATE."""
    burst = "UPDATE batch_download_requests SET progress_done = (progress_done + 1) % 5 WHERE id = ANY($1::uuid[])"
    everyone = box.bdr_ids[:users]
    burst_ms: list[float] = []
    each: list[dict[str, float]] = []
    delivered: list[str] = []
    update_ms: list[float] = []
    for i in range(BURSTS + 1):
        await clients.ask("arm", [(-1, h) for h in holding])
        t0 = time.monotonic()
        await box.db.execute(burst, everyone)
        committed = time.monotonic()
        got = [at for r in await clients.all("wait", 30.0) for at in r["times"]]
        await asyncio.sleep(0.5)
        if i == 0:
            continue  # warms PostgreSQL up
        update_ms.append((committed - t0) * 1000)
        ms = [(at - t0) * 1000 for at in got]
        burst_ms += ms
        delivered.append(f"{len(ms)}/{sum(holding)}")
        all_s = max(ms) / 1000 if len(ms) == sum(holding) else math.inf
        each.append({"p50_ms": statistics.median(ms), "p99_ms": _percentile(ms, 0.99),
                     "all_s": all_s})  # fmt: skip
    worst = max(b["all_s"] for b in each)
    print(f"  burst: p50 {statistics.median(burst_ms):.0f} ms, p99 "
          f"{_percentile(burst_ms, 0.99):.0f} ms, all {worst:.2f} s ({', '.join(delivered)}); "
          "each: " + ", ".join(f"{b['all_s']:.2f} s" for b in each), flush=True)  # fmt: skip
    return {"burst": {"p50_ms": statistics.median(burst_ms), "p99_ms": _percentile(burst_ms, 0.99),
                      "max_ms": max(burst_ms), "update_ms": statistics.median(update_ms),
                      "delivered": delivered, "each": each},
            "burst_all_s": worst}  # fmt: skip


async def _burst_level(box: Box, streams: int) -> dict[str, Any]:
    """The burst alone (`--burst-only`): the level filled by the lean client, then the bursts;
    the load average before and after, as other work on the box moves the figures."""
    load = os.getloadavg()
    async with _served(box, streams) as (_, clients, fig):
        t0 = time.monotonic()
        fig["fill"] = storm_summary(await clients.all("fill"), streams, t0)
        holding = [r["held"] for r in await clients.all("held")]
        print(f"  filled: {sum(holding):,} held in {fig['fill']['storm_s']:.1f} s; not 200: "
              f"{fig['fill']['storm_statuses'] or 'none'}", flush=True)  # fmt: skip
        fig |= await _bursts(box, clients, fig["users"], holding)
    return fig | {"held": sum(holding), "load_before": load, "load_after": os.getloadavg()}


async def run(
    levels: list[int], burst_only: bool = False, root: Path | None = None
) -> dict[str, Any]:
    """Every level's figures (`burst_only`: the burst's alone), the server run from `root`'s
    checkout (this one's by default) on a database its migrations made."""
    from pmd_service.core.db import connect, read_budget
    from pmd_service.core.public_ids import PublicIds
    from support.seeding import seed_stream_users
    from support.stack import CHECKOUT, fresh_stack

    root = (root or CHECKOUT).resolve()
    async with fresh_stack(root / "migrations") as settings:
        seeded = await seed_stream_users(
            settings.database_url,
            PublicIds(settings.sqids_alphabet),
            settings.jwt_secret_key,
            max(levels) // PER_USER,
        )
        budget = await read_budget(settings.database_url)
        # What the servers may take: all the database allows, less what others hold now and
        # some for this bench's own connections and for others that may connect meanwhile.
        room = budget.allowed - budget.in_use - 15
        print(f"database: max_connections {budget.max_connections}, {budget.reserved} reserved, "
              f"{budget.in_use} in use: {room} for the servers' pools and listeners", flush=True)  # fmt: skip
        db = await connect(settings.database_url, "pmd-bench")
        # The servers' logs stay for a look after the run (the stack's folder goes with it).
        logs = CHECKOUT / ".data" / "bench"
        box = Box(settings, seeded.tokens, seeded.bdr_ids, db, room, logs, root)
        results = []
        try:
            for n in levels:
                print(f"{n:,} streams, {processes_for(n)} server process(es), "
                      f"{clients_for(n)} client process(es) ...", flush=True)  # fmt: skip
                results.append(await (_burst_level if burst_only else run_level)(box, n))
        finally:
            await db.close()
    figures = {
        "levels": results,
        "targets": TARGETS,
        "per_user": PER_USER,
        "max_connections": budget.max_connections,
    }
    if not burst_only:
        report(figures)
    return figures


def met(level: dict[str, Any]) -> dict[str, bool]:
    """Each target, met or not, by the level's figures."""
    return {
        "streams": level["held"] >= TARGETS["streams"],
        "kb_per_stream_rss": level["kb_per_stream_rss"] <= TARGETS["kb_per_stream_rss"],
        "event_p99_ms": level["event_p99_ms"] <= TARGETS["event_p99_ms"],
        "burst_all_s": level["burst_all_s"] <= TARGETS["burst_all_s"],
        "storm_s": level["storm_s"] <= TARGETS["storm_s"],
        "storm_5xx": level["storm_5xx"] <= TARGETS["storm_5xx"],
        "flood_shed_pct": level["flood_shed_pct"] < TARGETS["flood_shed_pct"],
        "storm_vs_base": level["storm_vs_base"] <= TARGETS["storm_vs_base"],
    }


def report(figures: dict[str, Any]) -> None:
    levels = figures["levels"]
    print()
    print(f"{'streams':>8} {'procs':>5} {'held':>8} {'KB RSS':>7} {'KB TCP':>7} {'KB slab':>8} "
          f"{'event p50':>9} {'p99':>7} {'burst p50':>9} {'p99':>7} {'all':>7} {'storm':>7} "
          f"{'base':>7} {'flood':>7} {'base':>7} {'shed':>6} {'tickets':>7} {'base':>7} "
          f"{'not 200 in storm':>20}")  # fmt: skip
    for lv in levels:
        print(f"{lv['streams']:>8,} {lv['processes']:>5} {lv['held']:>8,} "
              f"{lv['kb_per_stream_rss']:>7.1f} {lv['kb_per_stream_kernel']:>7.2f} "
              f"{lv['kb_per_stream_slab']:>8.1f} {lv['event']['p50_ms']:>7.1f}ms "
              f"{lv['event_p99_ms']:>5.1f}ms {lv['burst']['p50_ms']:>7.0f}ms "
              f"{lv['burst']['p99_ms']:>5.0f}ms {lv['burst_all_s']:>6.2f}s {lv['storm_s']:>6.1f}s "
              f"{lv['base']['storm_s']:>6.1f}s {lv['flood_s']:>6.1f}s {lv['base']['flood_s']:>6.1f}s "
              f"{lv['flood_shed']:>6,} {lv['tickets']['storm_s']:>6.1f}s "
              f"{lv['base']['tickets']['storm_s']:>6.1f}s {lv['storm_statuses'] or '-'!s:>20}")  # fmt: skip
    top = max(levels, key=lambda lv: lv["streams"])
    verdicts = met(top)
    t = TARGETS
    print()
    print(f"at {top['streams']:,} streams asked ({top['processes']} server process(es)):")
    for key, text in (
        ("streams", f"held {top['held']:,} (target >= {t['streams']:,})"),
        ("kb_per_stream_rss", f"{top['kb_per_stream_rss']:.1f} KB a stream in the server "
                              f"processes (target <= {t['kb_per_stream_rss']:.0f} KB)"),
        ("event_p99_ms", f"one event's p99 {top['event_p99_ms']:.1f} ms "
                         f"(target <= {t['event_p99_ms']:.0f} ms)"),
        ("burst_all_s", f"burst to every stream {top['burst_all_s']:.2f} s "
                        f"(target <= {t['burst_all_s']:.0f} s)"),
        ("storm_s", f"reconnect storm absorbed in {top['storm_s']:.1f} s "
                    f"(target <= {t['storm_s']:.0f} s)"),
        ("storm_5xx", f"{top['storm_5xx']} 5xx answers in the storm (target {t['storm_5xx']})"),
        ("flood_shed_pct", f"the opening flood shed {top['flood_shed']:,} (503), "
                           f"{top['flood_shed_pct']:.3f}% (target < {t['flood_shed_pct']}%)"),
        ("storm_vs_base", f"the storm {top['storm_vs_base']:.2f}× the bare aiohttp app's "
                          f"{top['base']['storm_s']:.1f} s (target <= {t['storm_vs_base']}×)"),
    ):  # fmt: skip
        print(f"  {text}: {'met' if verdicts[key] else 'MISSED'}")
    print(f"  not targeted: the flood {top['flood_s']:.1f} s ({top['flood_vs_base']:.2f}× the "
          f"baseline's), the ticket storm {top['tickets']['storm_s']:.1f} s "
          f"({top['tickets_vs_base']:.2f}× the baseline's, {top['tickets']['storm_5xx']} 5xx)")  # fmt: skip
    print(
        f"kernel TCP memory counts both ends of each stream (both are on this box); "
        f"the server's end is about half: {top['kb_per_stream_kernel'] / 2:.2f} KB"
    )
    for lv in levels:
        if lv["lost"] or lv["misrouted"] or lv["open_statuses"]:
            print(f"at {lv['streams']:,}: {lv['lost']} streams closed by the server, "
                  f"{lv['misrouted']} events to the wrong user, openings refused while "
                  f"filling: {lv['open_statuses']}")  # fmt: skip

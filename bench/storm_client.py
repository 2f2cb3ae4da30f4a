"""The load side of the SSE benchmarks: `Client` holds streams and times their events;
`Storm` reopens many at once on one epoll loop, as lean as Python allows."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import json
import random
import re
import select
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The kernel picks the port at connect time instead of searching ~12,500 in use at bind time.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
LINGER_RST = struct.pack("ii", 1, 0)
CONNECTED = b"event: connected"
UPDATE = b"event: bdr_update\nid: "
IN, OUT, ERR = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR | select.EPOLLHUP
OPEN_DEADLINE_S = 600.0
STORM_DEADLINE_S = 300.0


def sse_request(port: int, token: str, last_id: bytes | None = None) -> bytes:
    resume = f"Last-Event-ID: {last_id.decode()}\r\n" if last_id else ""
    return (
        f"GET /api/pmd/bdr/sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: "
        f"Bearer {token}\r\nAccept: text/event-stream\r\n{resume}\r\n"
    ).encode()


def connected_end(buf: bytes) -> int:
    """Where the opening's `connected` event ends in `buf`; -1 until it is whole."""
    at = buf.find(CONNECTED)
    return -1 if at < 0 or buf.find(b"\n\n", at) < 0 else at + len(CONNECTED)


def whole(buf: bytes) -> tuple[bytes, bytes] | None:
    """An answer's body and what follows it in `buf`, once the body is whole."""
    head, ended, body = buf.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if not ended or length is None or len(body) < (n := int(length[1])):
        return None
    return body[:n], body[n:]


def code(answer: tuple[bytes, bytes] | None) -> str:
    """A refusal's `details.reason`, else its problem `code` (`?` when its body is cut short or
    names neither): the host's codes lump every 401 together."""
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
        problem = json.loads(answer[0]) if answer else {}
        return str((problem.get("details") or {}).get("reason") or problem["code"])
    return "?"


def reset(sock: socket.socket) -> None:
    """Gone at once, with a reset: no FIN handshake, no TIME_WAIT holding the port."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    sock.close()


class SseClient(asyncio.Protocol):
    """One EventSource-like stream: `ready` gets its opening's status, then live events count."""

    __slots__ = ("client", "held", "last_id", "ready", "request", "tail", "transport", "user")

    def __init__(self, user: int, request: bytes, client: Client) -> None:
        self.user, self.request, self.client = user, request, client
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.held = False
        self.last_id: bytes | None = None
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def __call__(self) -> SseClient:
        """Its own protocol factory (a lambda in a retry loop would bind the wrong one)."""
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf, start = self.tail + data, 0
        if not self.held:
            if len(buf) >= 12 and not buf.startswith(b"HTTP/1.1 200"):
                self.ready.set_result(int(buf[9:12]))
                self.drop()
                return
            if (start := connected_end(buf)) < 0:  # events before it are the opening's
                self.tail = buf
                return
            self.held = True
            self.ready.set_result(200)
        if (at := buf.rfind(b"\nid: ")) >= 0 and (end := buf.find(b"\n", at + 5)) > 0:
            self.last_id = buf[at + 5 : end]
        if count := buf.count(UPDATE, start):
            self.client.received(self.user, now, count)
        self.tail = buf[-(len(UPDATE) - 1) :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(0)
        elif self.held and not self.client.dropping:
            self.client.lost += 1

    def drop(self) -> None:
        if self.transport is not None:
            if (sock := self.transport.get_extra_info("socket")) is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            self.transport.abort()


@dataclass(kw_only=True)
class Client:
    """`per_user` streams for each of `users`; its public methods are a client's commands."""

    source: str
    port: int
    users: list[tuple[int, str]]
    per_user: int
    streams: list[SseClient] = field(default_factory=list)
    stormed: list[socket.socket] = field(default_factory=list)  # held by the last Storm
    # (token, Last-Event-ID or None) of each stream the storms reopen.
    wanted: list[tuple[str, bytes | None]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    target: int = -1  # the user whose event is awaited (-1: every user's)
    expected: int = 0
    misrouted: int = 0  # events of another user than the one awaited
    done: asyncio.Event = field(default_factory=asyncio.Event)
    lost: int = 0  # held streams the server closed
    dropping: bool = False  # once the bench drops its own

    def arm(self, target: int) -> None:
        """Awaits the next event on each stream of user `target` (-1: on every stream)."""
        owned = any(u == target for u, _ in self.users)
        self.expected = len(self.streams) if target < 0 else self.per_user * owned
        self.times, self.target, self.misrouted = [], target, 0
        self.done = asyncio.Event()
        if self.expected == 0:
            self.done.set()

    def received(self, user: int, at: float, count: int) -> None:
        if self.target >= 0 and user != self.target:
            self.misrouted += count
            return
        self.times.extend([at] * count)
        if len(self.times) >= self.expected:
            self.done.set()

    async def wait(self, within_s: float) -> dict[str, Any]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), within_s)
        return {"times": self.times, "misrouted": self.misrouted}

    async def open(self, first: int, end: int | None, concurrency: int) -> dict[str, Any]:
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
                        # No timeout, as EventSource: a retried opening would add to the queue.
                        status = await asyncio.wait_for(stream.ready, deadline - time.monotonic())
                    except (OSError, TimeoutError):
                        status = 0
                    if status == 200:
                        last = max(last, time.monotonic())
                        return stream
                    statuses[status] += 1
                    stream.drop()
                await asyncio.sleep(1 + random.random())
            return None

        mine = self.users[first:end]
        got = await asyncio.gather(*(one(u, t) for u, t in mine for _ in range(self.per_user)))
        opened = [s for s in got if s is not None]
        self.streams += opened
        return {
            "opened": len(opened),
            "asked": len(got),
            "last": last,
            "statuses": {str(k): v for k, v in statuses.items()},
        }

    async def storm(self, tickets: bool) -> dict[str, Any]:
        """Drops every stream at once and reopens all with Last-Event-ID (or a ticket)."""
        if not tickets:
            tokens = dict(self.users)
            self.wanted = [(tokens[s.user], s.last_id) for s in self.streams]
        self.close()
        await asyncio.sleep(0)
        requests = [sse_request(self.port, t, i) for t, i in self.wanted]
        then = None
        if tickets:
            host = f"HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            requests = [
                f"POST /api/pmd/bdr/sse-ticket {host}Authorization: Bearer {t}\r\n"
                "Content-Length: 0\r\n\r\n".encode()
                for t, _ in self.wanted
            ]
            resume = [f"&last_event_id={i.decode()}" if i else "" for _, i in self.wanted]
            then = [
                f"GET /api/pmd/bdr/sse?ticket={{ticket}}{r} {host}Accept: text/event-stream"
                "\r\n\r\n".encode()
                for r in resume
            ]
        storm = Storm(self.source, self.port, requests, then=then)
        out = storm.run()
        self.stormed = storm.held
        return out

    def held(self) -> dict[str, int]:
        return {"held": len(self.streams) + len(self.stormed)}

    def close(self) -> None:
        self.dropping = True
        for s in self.streams:
            s.drop()
        self.streams = []
        for sock in self.stormed:
            reset(sock)
        self.stormed = []


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    i: int  # its request's index
    then: bytes | None  # a ticket storm's GET, `{ticket}` in it, once the POST is answered
    sent: bool = False
    buf: bytes = b""


class Storm:
    """Opens `requests` against `port` all at once; `then`: a ticket storm's GETs."""

    def __init__(
        self, source: str, port: int, requests: list[bytes], then: list[bytes] | None = None
    ) -> None:
        self.source, self.port, self.requests, self.then = source, port, requests, then
        self.held: list[socket.socket] = []
        self.statuses: Counter[int] = Counter()
        # Why: an errno's name or `eof`, or a refusal's step, status and problem `code`.
        self.failures: Counter[str] = Counter()
        self.last = 0.0
        self.conns: dict[int, _Conn] = {}
        self.retry: list[tuple[float, int]] = []  # (when, index) of the failed, a heap
        self.ep = select.epoll()

    def run(self, deadline_s: float = STORM_DEADLINE_S) -> dict[str, Any]:
        deadline = time.monotonic() + deadline_s
        try:
            for i in range(len(self.requests)):
                self._start(i)
            while (self.conns or self.retry) and time.monotonic() < deadline:
                now = time.monotonic()
                while self.retry and self.retry[0][0] <= now:
                    self._start(heapq.heappop(self.retry)[1])
                wait = min(1.0, self.retry[0][0] - now) if self.retry else 1.0
                for fd, ev in self.ep.poll(max(0.0, wait)):
                    if fd in self.conns:
                        self._step(fd, ev)
        finally:
            for conn in self.conns.values():
                reset(conn.sock)
            self.ep.close()
        return {
            "opened": len(self.held),
            "asked": len(self.requests),
            "last": self.last,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "failures": dict(self.failures),
        }

    def _start(self, i: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.source, 0))
            code = sock.connect_ex(("127.0.0.1", self.port))
        except OSError as exc:
            code = exc.errno or -1
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._failed(i, 0, errno.errorcode.get(code, str(code)))
            return
        then = self.then[i] if self.then is not None else None
        self.conns[sock.fileno()] = _Conn(sock, i, then)
        self.ep.register(sock.fileno(), OUT | IN)

    def _step(self, fd: int, ev: int) -> None:
        conn = self.conns[fd]
        try:
            if not conn.sent and ev & OUT and not ev & ERR:
                conn.sock.send(self.requests[conn.i])
                conn.sent = True
                self.ep.modify(fd, IN)
                return
            data = conn.sock.recv(65536) if ev & IN else b""
            why = "eof" if ev & IN else "error event"
        except OSError as exc:
            data, why = b"", errno.errorcode.get(exc.errno or 0, str(exc.errno))
        buf = conn.buf = conn.buf + data
        ok = bool(data) and (len(buf) < 12 or buf.startswith(b"HTTP/1.1 200"))
        if ok and conn.then is not None:  # the ticket's answer: whole once its body is
            if (answer := whole(buf)) is not None:
                body, conn.buf = answer
                conn.sock.send(conn.then.replace(b"{ticket}", json.loads(body)["ticket"].encode()))
                conn.then = None
            return
        if ok and connected_end(buf) < 0:
            return
        refused = len(buf) >= 12 and not buf.startswith(b"HTTP/1.1 200")
        answer = whole(buf) if refused else None
        if refused and data and answer is None:
            return  # the rest of the refusal, whose problem `code` says why
        self.ep.unregister(fd)
        del self.conns[fd]
        if ok:
            self.held.append(conn.sock)
            self.last = time.monotonic()
        elif refused:
            reset(conn.sock)
            stage = "ticket" if conn.then is not None else "stream"
            self._failed(conn.i, int(buf[9:12]), f"{stage} {buf[9:12].decode()} {code(answer)}")
        else:
            reset(conn.sock)
            self._failed(conn.i, 0, why)

    def _failed(self, i: int, status: int, why: str) -> None:
        self.statuses[status] += 1
        self.failures[why] += 1
        heapq.heappush(self.retry, (time.monotonic() + 1 + random.random(), i))

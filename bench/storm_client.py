"""The load side of the SSE benchmarks. `SseClient` holds one stream and counts its live events
(asyncio; `bench.sse` and the client processes of `bench.sse --box` hold theirs with it). `Storm`
is a reconnect storm's client side, as lean as Python allows: `bench.sse --box` reopens every
stream of a client process at once through it, against the service and against its floor.

On a real site the clients of a storm are other machines; here they share the server's two
cores, so what they spend is taken from the servers. asyncio's `create_connection` costs a
task, several futures, a transport and an address lookup per stream (~0.4 ms of CPU an
opening, with the kernel's part); this is one epoll loop over plain non-blocking sockets,
bound with IP_BIND_ADDRESS_NO_PORT (the kernel picks the port at connect time instead of
searching for a free one at bind time among ~12,500 in use). The process does nothing else
while its storm runs, so the loop blocks it.

A stream counts as back when its answer's `connected` event has arrived; one refused, reset
or answered other than 200 is retried after 1–2 s, as EventSource's retry would.

A ticket storm (`then`) is what browsers do: each connection first sends a POST for a ticket,
reads its JSON answer, then sends on the same connection (kept alive, as a browser's would be)
the GET with that ticket in its query; a refusal retries both.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import json
import random
import select
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
LINGER_RST = struct.pack("ii", 1, 0)
CONNECTED = b"event: connected"
UPDATE = b"event: bdr_update\nid: "
IN, OUT, ERR = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR | select.EPOLLHUP


def sse_request(port: int, token: str, last_id: bytes | None = None) -> bytes:
    resume = b"Last-Event-ID: " + last_id + b"\r\n" if last_id else b""
    return (f"GET /api/pmd/bdr/sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: "
            f"Bearer {token}\r\nAccept: text/event-stream\r\n").encode() + resume + b"\r\n"  # fmt: skip


class Refused(Exception):
    """An opening answered other than 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"answered {status}")
        self.status = status


@dataclass
class Receipts:
    """The live events of a set of streams since the last `arm`: when each arrived, and how
    many were another user's than the one awaited."""

    times: list[float] = field(default_factory=list)
    target: int = -1  # the user whose event is awaited (-1: every user's)
    expected: int = 0
    misrouted: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    lost: int = 0  # held streams the server closed
    dropping: bool = False  # while the bench drops its own

    def arm(self, target: int, expected: int) -> None:
        self.times, self.target, self.expected, self.misrouted = [], target, expected, 0
        self.done = asyncio.Event()
        if expected == 0:
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


class SseClient(asyncio.Protocol):
    """One EventSource-like subscriber: `ready` once its `connected` event is in (`Refused`
    for another answer), then each live event's receipt time, and the newest `id:` (sent back
    as Last-Event-ID). A frame is written in one piece, so a marker only ever spans two reads,
    never a chunk boundary: a short tail is enough to find every one."""

    __slots__ = ("held", "last_id", "ready", "receipts", "request", "tail", "transport", "user")

    def __init__(self, user: int, request: bytes, receipts: Receipts) -> None:
        self.user, self.request, self.receipts = user, request, receipts
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
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
        if not self.held:  # one a Storm opened is only read here
            transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf, start = self.tail + data, 0
        if not self.held:
            if len(buf) < 12:
                self.tail = buf
                return
            if not buf.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(Refused(int(buf[9:12])))
                self.drop()
                return
            at = buf.find(CONNECTED)
            if at < 0 or buf.find(b"\n\n", at) < 0:
                self.tail = buf
                return
            self.held = True
            self.ready.set_result(None)
            start = at + len(CONNECTED)  # events before it are the opening's, not live
        if (at := buf.rfind(b"\nid: ")) >= 0 and (end := buf.find(b"\n", at + 5)) > 0:
            self.last_id = buf[at + 5 : end]
        if count := buf.count(UPDATE, start):
            self.receipts.received(self.user, now, count)
        self.tail = buf[-(len(UPDATE) - 1) :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before connected"))
        elif self.held and not self.receipts.dropping:
            self.receipts.lost += 1

    def drop(self) -> None:
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            self.transport.abort()

    def adopt(self) -> None:
        """Held already: a socket a Storm opened, now read here."""
        self.held = True
        self.ready.set_result(None)


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    request: bytes
    wanted: int  # its index in the storm's list
    sent: bool = False
    buf: bytes = b""
    then: bytes | None = None  # a ticket storm's GET, `{ticket}` in it, once the POST answers


@dataclass
class Storm:
    """Reopens `requests` (each a whole HTTP request) against `port` from `source`."""

    source: str
    port: int
    requests: list[bytes]
    deadline_s: float
    # A ticket storm: each request above is the POST, and this (one for each) the GET.
    then: list[bytes] | None = None
    held: list[socket.socket] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    # Why the connections counted as status 0 failed: an errno's name, or `eof` (closed
    # before an answer).
    failures: Counter[str] = field(default_factory=Counter)
    last: float = 0.0

    def run(self) -> dict[str, Any]:
        ep = select.epoll()
        conns: dict[int, _Conn] = {}
        retry: list[tuple[float, int]] = []
        deadline = time.monotonic() + self.deadline_s
        try:
            for i in range(len(self.requests)):
                self._start(ep, conns, i, retry)
            while (conns or retry) and time.monotonic() < deadline:
                now = time.monotonic()
                while retry and retry[0][0] <= now:
                    self._start(ep, conns, heapq.heappop(retry)[1], retry)
                wait = min(1.0, retry[0][0] - now) if retry else 1.0
                for fd, ev in ep.poll(max(0.0, wait)):
                    conn = conns.get(fd)
                    if conn is not None:
                        self._step(ep, conns, fd, conn, ev, retry)
        finally:
            for conn in conns.values():
                _reset(conn.sock)
            ep.close()
        return {
            "opened": len(self.held),
            "asked": len(self.requests),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "failures": dict(self.failures),
            "last": self.last,
        }

    def _start(
        self, ep: select.epoll, conns: dict[int, _Conn], i: int, retry: list[tuple[float, int]]
    ) -> None:
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
            self.failures[errno.errorcode.get(code, str(code))] += 1
            self._failed(i, 0, retry)
            return
        then = self.then[i] if self.then is not None else None
        conns[sock.fileno()] = _Conn(sock, self.requests[i], i, then=then)
        ep.register(sock.fileno(), OUT | IN)

    def _step(
        self,
        ep: select.epoll,
        conns: dict[int, _Conn],
        fd: int,
        conn: _Conn,
        ev: int,
        retry: list[tuple[float, int]],
    ) -> None:
        try:
            if not conn.sent and ev & OUT and not ev & ERR:
                conn.sock.send(conn.request)
                conn.sent = True
                ep.modify(fd, IN)
                return
            data = conn.sock.recv(65536) if ev & IN else b""
            why = "eof" if ev & IN else "error event"
        except OSError as exc:
            data, why = b"", errno.errorcode.get(exc.errno or 0, str(exc.errno))
        if not data:  # refused, reset, or closed before the opening
            self.failures[why] += 1
            self._drop(ep, conns, fd, conn)
            self._failed(conn.wanted, 0, retry)
            return
        buf = conn.buf + data
        if len(buf) >= 12 and not buf.startswith(b"HTTP/1.1 200"):
            self._drop(ep, conns, fd, conn)
            self._failed(conn.wanted, int(buf[9:12]), retry)
            return
        if conn.then is not None:  # the ticket's answer: whole once its body is
            head, ended, body = buf.partition(b"\r\n\r\n")
            length = _content_length(head)
            if not ended or length is None or len(body) < length:
                conn.buf = buf
                return
            ticket = json.loads(body[:length])["ticket"].encode()
            conn.sock.send(conn.then.replace(b"{ticket}", ticket))
            conn.then, conn.buf = None, body[length:]
            return
        at = buf.find(CONNECTED)
        if at < 0 or buf.find(b"\n\n", at) < 0:
            conn.buf = buf
            return
        ep.unregister(fd)
        del conns[fd]
        self.held.append(conn.sock)
        self.last = time.monotonic()

    def _drop(self, ep: select.epoll, conns: dict[int, _Conn], fd: int, conn: _Conn) -> None:
        ep.unregister(fd)
        del conns[fd]
        _reset(conn.sock)

    def _failed(self, i: int, status: int, retry: list[tuple[float, int]]) -> None:
        self.statuses[status] += 1
        heapq.heappush(retry, (time.monotonic() + 1 + random.random(), i))

    def close(self) -> None:
        for sock in self.held:
            _reset(sock)
        self.held = []


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def _reset(sock: socket.socket) -> None:
    """Gone at once, with a reset: no FIN handshake, no TIME_WAIT holding the port."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    sock.close()

"""What bounds a connection, the way nginx and Caddy bound theirs, so that idle or trickling
connections cannot use up a process's descriptors (a head's deadline is Go's ReadHeaderTimeout)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from ..core.codes import Code
from ..core.problems import TYPE_BASE, Problem
from ..core.settings import Settings

log = logging.getLogger(__name__)

# asyncio's context message for an accept that failed for want of descriptors or memory
# (EMFILE, ENFILE, ENOBUFS, ENOMEM), the same in CPython 3.8 to 3.13.
ACCEPT_FAILED = "socket.accept() out of system resource"
# The callback of asyncio's own accept retry, as its handle names it.
RETRY_ON_CLOSED = "._start_serving("
# Descriptors kept for what a process opens besides its connections: its pool, LISTEN
# connection and Redis, files being sent, the metrics port.
RESERVE_SHARE, RESERVE_MIN = 8, 64


@dataclass
class ConnectionCounts:
    """What a server process's connection guard counts, for /metrics."""

    open: int = 0
    refused: int = 0  # past MAX_CONNECTIONS: answered 503 and closed
    heads_late: int = 0  # closed for a head that did not come within HEADER_TIMEOUT_SECONDS


CONNECTION_COUNTS: web.AppKey[ConnectionCounts] = web.AppKey("connection_counts")


class Tally:
    """A warning at most once a `period`, saying how often its event happened since the last."""

    def __init__(self, what: str, period: float = 1.0) -> None:
        self.what = what  # "%d accept(s) failed" and the like
        self.period = period
        self.count = 0
        self.detail = ""
        self.total = 0
        self._last = -period
        self._timer: asyncio.TimerHandle | None = None

    def add(self, detail: str) -> None:
        self.count += 1
        self.total += 1
        self.detail = detail
        if self._timer is not None:
            # Its line is due, however late a busy loop runs it; one here would be a second.
            return
        wait = self._last + self.period - time.monotonic()
        if wait <= 0:
            self._flush()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self.count:
            log.warning(self.what + " (%s)", self.count, self.detail)
            self.count = 0
            self._last = time.monotonic()


class AcceptFailures:
    """The loop's exception handler: failed accepts are counted, one line a second; anything
    else goes to the handler before it. asyncio retries the accept a second later by itself
    (Python 3.11 tries again once per waiting connection meanwhile: one call each)."""

    def __init__(
        self,
        inner: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None,
        tally: Tally,
    ) -> None:
        # None: the loop has no handler of its own, so asyncio's default one.
        self.inner = inner or (lambda loop, context: loop.default_exception_handler(context))
        self.tally = tally

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") == ACCEPT_FAILED and isinstance(exc, OSError):
            self.tally.add(exc.strerror or str(exc))
            return
        if isinstance(exc, ValueError) and RETRY_ON_CLOSED in str(context.get("message")):
            # Those retries, still pending when shutdown closed the socket: nothing to accept
            # any more, and one traceback each would hold the exit up.
            return
        self.inner(loop, context)


def count_failed_accepts(loop: asyncio.AbstractEventLoop) -> None:
    tally = Tally(
        "%d accept(s) failed in the last second; new connections wait in the listen backlog "
        "meanwhile (the descriptor limit, MAX_CONNECTIONS)"
    )
    loop.set_exception_handler(AcceptFailures(loop.get_exception_handler(), tally))


def raise_descriptor_limit() -> None:
    """The soft RLIMIT_NOFILE raised to the hard one (a container's soft default is 1,024,
    its hard one far higher)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, hard, exc)


def connection_cap(configured: int | None, descriptors: int) -> int:
    """MAX_CONNECTIONS, or (unset) what `descriptors` allows less a reserve for the rest."""
    fits = max(descriptors - max(RESERVE_MIN, descriptors // RESERVE_SHARE), 1)
    if configured is None:
        return fits
    if configured > fits:
        log.warning(
            "MAX_CONNECTIONS=%d is more than the descriptor limit (%d) leaves for connections "
            "(about %d): past that, accepts fail instead of answering 503",
            configured,
            descriptors,
            fits,
        )
    return configured


def _refusal(server_name: str) -> bytes:
    body = msgspec.json.encode(
        Problem(
            TYPE_BASE + "too-many-connections",
            "Service Unavailable",
            503,
            "This server holds as many connections as it may (MAX_CONNECTIONS); retry in a second.",
            Code.TOO_MANY_CONNECTIONS,
            {"retry_after_seconds": 1},
        )
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Server: {server_name}\r\n"
        "Content-Type: application/problem+json\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class ConnectionGuard:
    """The listening socket's protocol factory: aiohttp's (`inner`) inside a `Guarded` one.

    The connections waiting for a head are kept in one dict, oldest deadline first, and swept
    by one timer: a timer of each connection's own, even cancelled, would stay in the loop's
    heap until it would have fired."""

    def __init__(
        self,
        inner: Callable[[], asyncio.Protocol],
        cap: int,
        header_timeout: float,
        server_name: str,
        counts: ConnectionCounts,
    ) -> None:
        self.inner = inner
        self.cap = cap
        self.header_timeout = header_timeout
        self.period = min(1.0, header_timeout / 2)  # between sweeps
        self.loop = asyncio.get_running_loop()
        self.counts = counts
        self.waiting: dict[Guarded, float] = {}  # deadline of each head awaited, in order
        self._sweep: asyncio.TimerHandle | None = None
        self.refusal = _refusal(server_name)
        self.refused = Tally(
            f"%d connection(s) refused in the last second: {cap} open (MAX_CONNECTIONS)"
        )

    def __call__(self) -> Guarded:
        return Guarded(self)

    def refuse(self, transport: asyncio.Transport) -> None:
        transport.write(self.refusal)
        transport.close()
        self.counts.refused += 1
        self.refused.add("503, closed")

    def await_head(self, conn: Guarded) -> None:
        # Re-inserted at the end: the dict stays in deadline order (one timeout for all).
        self.waiting.pop(conn, None)
        self.waiting[conn] = self.loop.time() + self.header_timeout
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.period, self.sweep)

    def sweep(self) -> None:
        now = self.loop.time()
        late = list(itertools.takewhile(lambda conn: self.waiting[conn] <= now, self.waiting))
        for conn in late:
            del self.waiting[conn]
            conn.late()
        self.counts.heads_late += len(late)
        if self.waiting:
            self._sweep = self.loop.call_later(self.period, self.sweep)
        else:
            self._sweep = None
            self.waiting = {}  # a dict keeps its table at its largest: a flood's, otherwise


class Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol, with a deadline on each request's head."""

    __slots__ = ("busy", "guard", "inner", "transport", "unread")

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a request's handler runs: its head came
        # The body of the last request, when its handler left some unread: the bytes that
        # follow are that body's (aiohttp reads and drops them), not a new head.
        self.unread: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        guard = self.guard
        if guard.counts.open >= guard.cap:
            guard.refuse(transport)
            return
        guard.counts.open += 1
        self.transport = transport
        self.inner = guard.inner()
        self.inner.connection_made(transport)
        guard.await_head(self)

    def late(self) -> None:
        if not self.busy and self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        if inner is None:  # refused: nothing reads it
            return
        inner.data_received(data)
        if not self.busy and self not in self.guard.waiting:
            if self.unread is not None:
                if self.unread.is_eof():  # this chunk ended it: the next one starts a head
                    self.unread = None
                return
            self.guard.await_head(self)  # the first byte of a request after an idle keep-alive

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.waiting.pop(self, None)
        inner, self.inner = self.inner, None
        self.transport = self.unread = None
        if inner is not None:
            self.guard.counts.open -= 1
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def hand_over(self, protocol: asyncio.Protocol) -> asyncio.BaseProtocol | None:
        inner, self.inner = self.inner, protocol
        return inner

    def head_came(self) -> None:
        self.busy = True
        self.unread = None
        self.guard.waiting.pop(self, None)

    def handled(self, request: web.BaseRequest) -> None:
        self.busy = False
        if not request.content.is_eof():
            self.unread = request.content


@web.middleware
async def head_deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request reaches the app once its head is in: its connection's deadline is met."""
    transport = request.transport
    guarded = transport.get_protocol() if transport is not None else None
    if not isinstance(guarded, Guarded):  # not served through a GuardedSite (aiohttp's tests)
        return await handler(request)
    guarded.head_came()
    try:
        return await handler(request)
    finally:
        guarded.handled(request)


class GuardedSite(web.BaseSite):
    """A TCP site (aiohttp's TCPSite, less TLS) whose connections a ConnectionGuard holds."""

    def __init__(
        self,
        runner: web.AppRunner,
        settings: Settings,
        server_name: str,
        *,
        backlog: int,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self.web_runner = runner
        self.settings = settings
        self.server_name = server_name
        self.listen_backlog = backlog
        self.reuse_port = reuse_port
        self.listener: asyncio.Server | None = None

    @property
    def name(self) -> str:
        port = self.settings.port
        if self.listener is not None and self.listener.sockets:
            port = self.listener.sockets[0].getsockname()[1]
        return str(URL.build(scheme="http", host=self.settings.host, port=port))

    async def start(self) -> None:
        await super().start()
        server = self.web_runner.server
        assert server is not None
        descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        guard = ConnectionGuard(
            server,
            connection_cap(self.settings.max_connections, descriptors),
            self.settings.header_timeout_seconds,
            self.server_name,
            self.web_runner.app.get(CONNECTION_COUNTS) or ConnectionCounts(),
        )
        self.listener = await asyncio.get_running_loop().create_server(
            guard,
            self.settings.host,
            self.settings.port,
            backlog=self.listen_backlog,
            reuse_port=self.reuse_port or None,
        )

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
        await super().stop()

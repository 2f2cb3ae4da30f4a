"""The SSE hub: one LISTEN connection per server process, routing events (of every kind the app
hands it: sse/kinds.py) to subscribers.

The NOTIFY payload is only a doorbell. After each ring (doorbells are coalesced) the hub reads
`stream_events` after the last id it has seen, on the listener connection itself, so the events of
a process cost one database connection whatever the number of subscribers. Event ids become
visible in commit order (the trigger serialises event-producing transactions), so "id > last
seen" never skips one, and after a lost connection the hub re-LISTENs, then replays from the
last id it saw: events committed meanwhile arrive once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Any, Protocol

import asyncpg

from ..core.codes import Code
from ..core.db import connect
from ..core.problems import ProblemError, unavailable
from . import frames
from .heap import HeapKeeper
from .kinds import EventKinds, UnknownKind, reaches
from .recent import RecentEvents
from .revocation import Pair, Revoked

# Which (caller, target) pairs of open streams lost their access (access.revocations).
AccessCheck = Callable[[Collection[Pair]], Awaitable[dict[Pair, Revoked]]]

log = logging.getLogger(__name__)

CHANNEL = "pmd_stream_events"
LISTENER_NAME = "pmd-sse-listener"
READ_BATCH = 5000
DISPATCH_SLICE = 2000  # streams written to between two turns of the event loop
# The periodic passes (pings, expiry, gone clients, access) give the event loop a turn after this
# many streams, or after this many pings (a write each, ~25 us on loopback), so that an event
# waits at most ~1 ms behind them.
TICK_SLICE = 250
PINGS_A_TURN = 32
# The once-a-period pass is spread over its period in this many steps: its pings, and their
# clients' reads, all at once took the cores from an event for tens of ms every second.
TICK_STEPS = 20
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
# A starting process shares the machine with every other one starting: bounded as a query is.
START_SECONDS = 30.0

SQL_LAST_EVENT = "SELECT coalesce(max(id), 0) FROM stream_events"
# payload as text: it is decoded only for events someone here subscribes to.
SQL_EVENTS_AFTER = """
SELECT id, user_id, kind, audience, payload::text AS payload FROM stream_events
WHERE id > $1 ORDER BY id LIMIT $2
"""


# (event id, frame, the frame as one HTTP/1.1 chunk, whether a moderator's stream watching the
# user gets it too), shared by every subscriber it goes to: a burst allocates per event, not per
# delivery, which keeps short-lived objects out of the old GC generation.
Event = tuple[int, bytes, bytes, bool]


class Socket(Protocol):
    """A stream's socket as the hub writes to it (api/aiohttp_adapter.py, `DirectSocket`):
    `chunked` says how a write must be framed, None that the opening is not out yet."""

    chunked: bool | None

    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class Subscriber(asyncio.Protocol):
    """One open stream, and, once its opening is out, its connection's protocol: no task, no
    request or response is kept for it, and the hub writes its frames to the socket. Before
    the opening is out, or while the socket is backed up (the transport paused writing),
    frames wait in a bounded queue, written when it is out or drained.

    Slotted, and holding a list (not a deque: an empty one already holds a whole block),
    because there are thousands of them per process.
    """

    __slots__ = (
        "_hub",
        "_limit",
        "_queue",
        "caller_id",
        "end",
        "expires_at",
        "farewell",
        "live",
        "next_ping",
        "ping_due",
        "sent",
        "socket",
        "target_id",
    )

    def __init__(
        self,
        hub: Hub,
        caller_id: int,
        target_id: int,
        socket: Socket,
        limit: int,
        next_ping: float,
        expires_at: float,
    ) -> None:
        self._hub = hub
        self.caller_id = caller_id
        self.target_id = target_id
        self.socket = socket
        self._limit = limit
        self._queue: list[Event] = []
        self.ping_due = False
        self.next_ping = next_ping  # loop time
        self.expires_at = expires_at  # wall-clock time, as the token's `exp`
        # Why the stream must end (overflow, timeout, revoked, gone, shutdown), and the last
        # frame that tells the client so, if any.
        self.end: str | None = None
        self.farewell: bytes | None = None
        # The last event id the client has been sent (the opening's watermark at first): live
        # events at or below it are duplicates.
        self.sent = 0
        self.live = False  # while frames go straight to the socket

    def deliver(self, events: list[Event]) -> None:
        """Hand on one read batch's events for this stream's user (ascending ids)."""
        if self.live:
            last = events[-1][0]
            if last <= self.sent:  # the opening had them all
                return
            socket = self.socket
            if len(events) == 1:
                socket.write(events[0][2] if socket.chunked else events[0][1])
            else:
                sent = self.sent
                fresh = events if events[0][0] > sent else [e for e in events if e[0] > sent]
                if len(fresh) > self._limit:
                    self._overflow()
                    return
                chunked = socket.chunked
                socket.write(b"".join([e[2] if chunked else e[1] for e in fresh]))
            self.sent = last
            return
        if self.end is not None:
            return
        if len(self._queue) + len(events) > self._limit:
            self._overflow()
            return
        self._queue.extend(events)

    def _overflow(self) -> None:
        # Fell behind: drop it rather than buffer without bound (and never send part of a
        # batch). The client reconnects with the last id it received and catches up from the
        # table.
        self._queue.clear()
        self.finish("overflow")

    def ping(self) -> None:
        if self.live:
            self.socket.write(frames.PING_CHUNK if self.socket.chunked else frames.PING)
        else:
            self.ping_due = True

    def finish(self, reason: str, farewell: bytes | None = None) -> None:
        if self.end is None:
            self.end = reason
            self.farewell = farewell
        socket = self.socket
        live, self.live = self.live, False
        if socket.chunked is None or socket.is_closing():
            return  # ended once its opening is out (`flush`), or already closed
        if live:
            last = self.farewell or (frames.reconnect() if self.end == "shutdown" else b"")
            if socket.chunked:
                socket.write((frames.chunk(last) if last else b"") + frames.LAST_CHUNK)
            elif last:
                socket.write(last)
            socket.close()
        else:  # backed up: a client that is not reading gets no last words
            socket.abort()

    def flush(self) -> None:
        """What waited goes out: once the opening is out, and whenever the socket drains."""
        if self.end is not None:
            self.live = True  # its last words go out now
            self.finish(self.end)
            return
        out: list[bytes] = []
        if self.ping_due:
            self.ping_due = False
            out.append(frames.PING)
        sent = self.sent
        for event_id, frame, _, _ in self._queue:
            if event_id > sent:  # the opening (or an earlier batch) already had it
                out.append(frame)
                sent = event_id
        self.sent = sent
        self._queue.clear()
        self.live = True  # before the write, which may pause it again
        if out:
            data = b"".join(out)
            self.socket.write(frames.chunk(data) if self.socket.chunked else data)

    # The connection's protocol, once the opening is out (api/aiohttp_adapter.py, `detach`);
    # what the client sends is ignored, as asyncio.Protocol's own data_received does.

    def pause_writing(self) -> None:
        self.live = False

    def resume_writing(self) -> None:
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._hub.unsubscribe(self)


class Hub:
    def __init__(
        self,
        dsn: str,
        kinds: EventKinds,
        *,
        search_path: str | None = None,
        max_per_user: int,
        queue_size: int,
        ping_seconds: float,
        liveness_seconds: float,
        access_check: AccessCheck | None = None,
        access_check_seconds: float = 30.0,
        heap: HeapKeeper | None = None,
    ) -> None:
        self._dsn = dsn
        self.kinds = kinds
        self.access_check = access_check
        self._access_check_seconds = access_check_seconds
        self._search_path = search_path
        self._max_per_user = max_per_user
        self._queue_size = queue_size
        self._ping_seconds = ping_seconds
        self._liveness_seconds = liveness_seconds
        self._by_target: dict[int, set[Subscriber]] = {}
        # Every stream the periodic pass still tends (an ended one is dropped by the next pass),
        # walked without a copy of the whole set each second.
        self._tended: list[Subscriber] = []
        self._per_caller: dict[int, int] = {}
        self._conn: asyncpg.Connection | None = None
        self._doorbell = asyncio.Event()
        self._lost = False
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.last_seen = 0
        # The newest events read, for streams that resume (Last-Event-ID) without a query.
        self.recent = RecentEvents()
        self.reconnects = 0
        self.frames_queued = 0  # event frames handed to subscribers (for /metrics)
        self.revoked = 0  # streams ended because their access was withdrawn (for /metrics)
        self.opened = 0  # streams ever subscribed, and ever unsubscribed (for `heap`)
        self.ended = 0
        # Streams ended, by why (gone, timeout, revoked, overflow, shutdown), for /metrics.
        self.ended_by: dict[str, int] = {}
        self.heap = heap

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """LISTEN before the first read, so no event falls between the two; then run."""
        self._conn = await self._connect(START_SECONDS)
        self.last_seen = await self._conn.fetchval(SQL_LAST_EVENT, timeout=START_SECONDS)
        self.recent.start(self.last_seen)
        if self.heap is not None:
            self.heap.start()
        self._tasks = [
            asyncio.create_task(self._listen(), name="sse-hub-listen"),
            asyncio.create_task(self._tick(), name="sse-hub-tick"),
        ]
        if self.access_check is not None:
            self._tasks.append(asyncio.create_task(self._guard(), name="sse-hub-access"))

    def close_all(self) -> None:
        """End every stream now (shutdown); new subscriptions are refused from here on."""
        self.closing = True
        for sub in self._subscribers():
            sub.finish("shutdown")

    async def stop(self) -> None:
        self.close_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop()
        if self.heap is not None:
            self.heap.stop()

    # --- subscribers -------------------------------------------------------------------------

    def refuse_if_closing(self) -> None:
        if self.closing:
            raise unavailable(
                "This server is shutting down; reconnect in a few seconds.",
                "shutting-down",
                2,
                code=Code.SHUTTING_DOWN,
            )

    def subscribe(
        self, caller_id: int, target_id: int, socket: Socket, token_expires_at: float
    ) -> Subscriber:
        self.refuse_if_closing()
        # Counted per caller (a moderator's streams on others count against the moderator) and
        # per process: each replica enforces it for the streams it holds.
        open_now = self._per_caller.get(caller_id, 0)
        if open_now >= self._max_per_user:
            raise ProblemError(
                429,
                "too-many-streams",
                "Too Many Requests",
                f"You already have {open_now} live streams open on this server (the limit is "
                f"{self._max_per_user}); close one (e.g. another browser tab) and retry.",
                headers={"Retry-After": "5"},
                code=Code.TOO_MANY_STREAMS,
                details={"limit": self._max_per_user, "retry_after_seconds": 5},
            )
        loop = asyncio.get_running_loop()
        sub = Subscriber(
            self,
            caller_id,
            target_id,
            socket,
            self._queue_size,
            loop.time() + self._ping_seconds,
            token_expires_at,
        )
        self._per_caller[caller_id] = open_now + 1
        self.opened += 1
        self._by_target.setdefault(target_id, set()).add(sub)
        self._tended.append(sub)
        if self.heap is not None:
            self.heap.opened(self.opened)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._by_target.get(sub.target_id)
        if subs is not None and sub in subs:
            subs.discard(sub)
            if not subs:
                del self._by_target[sub.target_id]
            self.ended += 1
            why = sub.end or "gone"  # the client left, or its opening failed
            self.ended_by[why] = self.ended_by.get(why, 0) + 1
            sub.end = why  # so the periodic pass lets it go too
            sub.live = False
            self._per_caller[sub.caller_id] -= 1
            if not self._per_caller[sub.caller_id]:
                del self._per_caller[sub.caller_id]

    @property
    def subscriber_count(self) -> int:
        return sum(self._per_caller.values())

    def _subscribers(self) -> Iterator[Subscriber]:
        for subs in list(self._by_target.values()):
            yield from list(subs)

    async def _tick(self) -> None:
        """Every stream once a second (or per ping period if shorter): pings and token
        expiry, with one timer for the whole process instead of one per stream."""
        period = min(1.0, self._ping_seconds)
        loop = asyncio.get_running_loop()
        while True:
            begun = loop.time()
            streams = self._tended
            self._tended = kept = list[Subscriber]()  # streams opened meanwhile join it
            step = -(-len(streams) // TICK_STEPS)
            for k in range(TICK_STEPS):
                await asyncio.sleep(max(0.0, begun + period * (k + 1) / TICK_STEPS - loop.time()))
                await self._tend(streams[k * step : (k + 1) * step], kept)
            if self.heap is not None:
                self.heap.tend(self.opened, self.ended, self.subscriber_count)

    async def _tend(self, streams: list[Subscriber], kept: list[Subscriber]) -> None:
        """Pings, expiry and gone clients for `streams`, those still open added to `kept`."""
        loop = asyncio.get_running_loop()
        checked = pinged = 0
        now, wall = loop.time(), time.time()
        for sub in streams:
            if checked >= TICK_SLICE or pinged >= PINGS_A_TURN:
                await asyncio.sleep(0)
                checked = pinged = 0
                now, wall = loop.time(), time.time()
            checked += 1
            if sub.end is not None:
                continue
            if sub.socket.is_closing():
                sub.finish("gone")
                continue
            if sub.expires_at <= wall:
                sub.finish("timeout", frames.TIMEOUT)
                continue
            kept.append(sub)
            if sub.next_ping <= now:
                sub.next_ping = now + self._ping_seconds
                sub.ping()
                pinged += 1

    async def _guard(self) -> None:
        """End the streams whose caller may no longer see their target's downloads, in one query
        a period for every stream of the process; a failed check ends nothing until the next."""
        assert self.access_check is not None
        while True:
            await asyncio.sleep(self._access_check_seconds)
            pairs: set[Pair] = set()
            checked = 0
            for target_id, subs in list(self._by_target.items()):
                if checked >= TICK_SLICE:
                    await asyncio.sleep(0)
                    checked = 0
                checked += len(subs)
                pairs.update((sub.caller_id, target_id) for sub in subs if sub.end is None)
            if not pairs:
                continue
            try:
                revoked = await self.access_check(pairs)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("SSE access check failed (%s: %s); next try in %.0f s",
                            type(exc).__name__, exc, self._access_check_seconds)  # fmt: skip
                continue
            if not revoked:
                continue
            for sub in self._subscribers():
                why = revoked.get((sub.caller_id, sub.target_id))
                if why is not None and sub.end is None:
                    sub.finish("revoked", why.frame())
                    self.revoked += 1
                    log.info("SSE stream of user %d on user %d ended: %s",
                             sub.caller_id, sub.target_id, why.reason)  # fmt: skip

    # --- the listener ------------------------------------------------------------------------

    async def _connect(self, seconds: float) -> asyncpg.Connection:
        conn = await connect(
            self._dsn, LISTENER_NAME, search_path=self._search_path, timeout=seconds
        )
        try:
            conn.add_termination_listener(self._on_terminated)
            await conn.add_listener(CHANNEL, self._on_doorbell)
        except BaseException:
            conn.terminate()
            raise
        self._lost = False
        return conn

    def _on_doorbell(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self._doorbell.set()

    def _on_terminated(self, conn: Any) -> None:
        # asyncpg calls this when the server ends the session, then stays silent forever:
        # the listen loop must notice and reconnect.
        if conn is self._conn:
            self._lost = True
            self._doorbell.set()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _listen(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            try:
                if self._conn is None:
                    self._conn = await self._connect(self._liveness_seconds)
                    self.reconnects += 1
                    log.info("SSE listener reconnected; replaying after event %d", self.last_seen)
                conn = self._conn
                self._doorbell.clear()
                await self._read(conn)  # whatever was committed while we were not listening
                delay = BACKOFF_FIRST
                while not self._lost:
                    try:
                        async with asyncio.timeout(self._liveness_seconds):
                            await self._doorbell.wait()
                    except TimeoutError:
                        # Quiet for a while: make sure the connection is really alive (a
                        # half-open TCP connection raises nothing by itself).
                        await conn.fetchval("SELECT 1", timeout=self._liveness_seconds)
                        continue
                    self._doorbell.clear()
                    if self._lost or conn.is_closed():
                        break
                    await self._read(conn)
                log.warning("SSE listener connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down, connection dropped, query timed out
                log.warning(
                    "SSE listener: %s: %s; reconnecting in %.1f s", type(exc).__name__, exc, delay
                )
            self._drop()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _read(self, conn: asyncpg.Connection) -> None:
        while True:
            rows = await conn.fetch(
                SQL_EVENTS_AFTER, self.last_seen, READ_BATCH, timeout=self._liveness_seconds
            )
            if rows:
                # Kept before the dispatch, which yields: a stream resuming meanwhile is
                # answered up to the newest event kept, and this batch's live copies of what
                # it was answered are then dropped as duplicates (Subscriber.sent).
                for event_id, user_id, kind, audience, payload in rows:
                    self.recent.add(event_id, user_id, kind, audience, payload)
                await self._dispatch(rows)
                self.last_seen = rows[-1][0]
            if len(rows) < READ_BATCH:
                return

    async def _dispatch(self, rows: list[asyncpg.Record]) -> None:
        """Route one read batch: each event encoded once, each stream written once; the loop
        gets a turn every DISPATCH_SLICE streams, so a burst to every stream does not stall
        everything else (pings, new streams) meanwhile."""
        watched = self._by_target
        kinds = self.kinds
        by_user: defaultdict[int, list[Event]] = defaultdict(list)
        for event_id, user_id, kind, audience, payload in rows:
            if user_id not in watched or not reaches(audience, True):
                continue
            try:
                frame = kinds.frame(kind, payload, event_id)
            except UnknownKind:  # a later release's
                continue
            except Exception:  # a row its kind's shape rejects must not stop the others' streams
                log.exception(
                    "SSE: event %d has a payload its kind (%s) rejects; skipped", event_id, kind
                )
                continue
            event = (event_id, frame, frames.chunk(frame), reaches(audience, False))
            by_user[user_id].append(event)
        written = 0
        for user_id, events in by_user.items():
            if written >= DISPATCH_SLICE:
                written = 0
                await asyncio.sleep(0)
            subs = watched.get(user_id)
            if not subs:  # its last stream closed meanwhile
                continue
            # A moderator watching the user gets the events whose audience includes watchers.
            others = None
            for sub in subs:
                if sub.caller_id == user_id:
                    sub.deliver(events)
                    continue
                if others is None:
                    others = [e for e in events if e[3]]
                if others:
                    sub.deliver(others)
            written += len(subs)
            self.frames_queued += len(subs) * len(events)

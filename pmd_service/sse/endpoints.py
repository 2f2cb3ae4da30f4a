"""GET /api/pmd/bdr/sse, the stream (the hub's lifetime in the app: sse/lifetime.py; the
tickets it takes: api/ticket_endpoint.py)."""

from __future__ import annotations

import asyncio
import random
from typing import Annotated

import msgspec
from aiohttp import ClientConnectionResetError, web
from aiohttp.typedefs import Handler

from ..api import tickets
from ..api.aiohttp_adapter import Detached, DirectSocket, detach
from ..api.auth import bearer_or_ticket
from ..api.declaration import TICKET_CODES, Auth, Endpoint, Param
from ..api.keys import DB_POOL, STREAM_RESPONSE
from ..api.routing import parse_query
from ..core.codes import Code
from ..core.logs import REQUEST_ID_HEADER, request_id_from
from . import frames, replay
from .hub import Hub
from .kinds import EventKinds
from .pool_turns import Turn, Turns
from .user_lookups import UserLookups

STREAM_PATH = "/api/pmd/bdr/sse"
# Openings handled at once, the others waiting with only their connection and head: openings
# all in flight together fragment the allocator's arenas among the streams' long-lived objects
# (docs/architecture.md, "Live status over SSE"), and this many still share user lookups.
OPENINGS_AT_ONCE = 256
# How long an opening may take to go out, after its turn at the gate: a client that does not
# read it is cut off then, rather than holding its connection and the opening's bytes.
OPENING_SEND_SECONDS = 30.0
# X-Accel-Buffering: nginx (and proxies that honour it) would otherwise buffer the stream.
_NO_BUFFERING = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_HEADERS = {"Content-Type": "text/event-stream", **_NO_BUFFERING}


async def _open(
    request: web.Request, target_id: int, last_event_id: int | None, owner: bool
) -> tuple[Detached, int]:
    """Send the opening; returns the response and the watermark (the last event id it holds).
    `owner`: the caller watches their own downloads (a moderator's stream has no exports)."""
    hub = request.app[SSE_HUB]
    opening = replay.resumed_from_memory(hub.kinds, hub.recent, target_id, last_event_id, owner)
    if opening is None:
        async with request.app[SSE_POOL_TURNS]:
            hub.refuse_if_closing()
            pool = request.app[DB_POOL]
            opening = await replay.opening(pool, hub.kinds, target_id, last_event_id, owner)
    response = Detached(headers=SSE_HEADERS)
    response.headers[REQUEST_ID_HEADER] = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    request[STREAM_RESPONSE] = response
    retry = frames.RETRY_MS + random.randrange(frames.RETRY_JITTER_MS)
    # Sent outside the gate: clients that never read would otherwise hold every turn of it.
    if (turn := request.get(OPENING_TURN)) is not None:
        turn.leave()
    try:
        async with asyncio.timeout(OPENING_SEND_SECONDS):
            await response.prepare(request)
            await response.write(frames.retry(retry) + opening.body)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()  # what it holds unsent goes with it
        # aiohttp's own error for a closed client: answered as a client gone, whenever it came.
        raise ClientConnectionResetError("the client did not read its opening") from None
    return response, opening.watermark


async def stream(request: web.Request) -> web.StreamResponse:
    # Subscribe before reading the opening, so nothing committed in between is missed; the
    # watermark then drops what the opening already holds. Once the opening is out, the
    # connection is the subscriber's (Subscriber, api/aiohttp_adapter.py `detach`): a stream
    # open for hours keeps no task, frame, request or response of aiohttp's or of this handler.
    query = parse_query(request, StreamQuery)
    # The caller's lookup is batched with other openings' (sse/user_lookups.py), in their turns
    # at the pool.
    principal = await bearer_or_ticket(request, request.app[SSE_CALLERS].by_sqid)
    last_event_id = replay.parse_last_event_id(
        request.headers.get("Last-Event-ID") or query.last_event_id
    )
    transport = request.transport
    if transport is None:  # the client is already gone
        raise web.HTTPNoContent()
    socket = DirectSocket(transport)
    hub = request.app[SSE_HUB]
    sub = hub.subscribe(
        principal.caller.id, principal.target.id, socket, principal.token_expires_at
    )
    try:
        response, sub.sent = await _open(
            request, sub.target_id, last_event_id, sub.caller_id == sub.target_id
        )
    except BaseException:
        hub.unsubscribe(sub)
        raise
    socket.take_over(response)
    if detach(request, sub):
        sub.flush()
    else:  # the client left while its opening went out
        hub.unsubscribe(sub)
    return response


@web.middleware
async def opening_gate_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outside the problem middleware and the handler: a waiting opening holds none of their
    frames, its ticket already being spent. Its opening is sent after the turn is left (`_open`)."""
    if request.path != STREAM_PATH:
        return await handler(request)
    tickets.spend_on_arrival(request)
    request[OPENING_TURN] = turn = await request.app[SSE_OPENING_GATE].take()
    try:
        return await handler(request)
    finally:
        turn.leave()


_TICKET = "A ticket from POST /api/pmd/bdr/sse-ticket, instead of the Bearer header"
_RESUME = "Resume after this event id (for a new EventSource, which cannot set the header)"


class StreamQuery(msgspec.Struct):
    """The query of GET /api/pmd/bdr/sse (EventSource can set neither header)."""

    ticket: Annotated[str, msgspec.Meta(description=_TICKET)] | None = None
    last_event_id: Annotated[str, msgspec.Meta(description=_RESUME)] | None = None


_STREAM_SUMMARY = (
    "Live status of the user's downloads and posts (Server-Sent Events). Events: `retry`, then "
    "a snapshot (the events of an opening below), then `connected` ({resumed}, with `id:`); "
    "then, live, in commit order: {live}. `: ping` every 15 s; `timeout` ({detail}) when the "
    "token expires; `access_revoked` ({reason, status, detail}) when the account is banned, "
    "deactivated or loses the role it watched with (checked every 30 s); `retry` and "
    "`reconnect` ({reason, retry_ms, detail}) when the server shuts down: reconnect (with "
    "Last-Event-ID) to resume. With Last-Event-ID, only the missed events (or `reset` "
    "({detail}) and the snapshot when it is too old). A moderator's stream of another user "
    "carries only the events marked for the user's watchers. Auth: Bearer or `ticket`."
)


def endpoint(kinds: EventKinds) -> Endpoint:
    """The stream's endpoint, its events those of `kinds`."""
    return Endpoint(
        "get",
        STREAM_PATH,
        stream,
        "streamBdrs",
        _STREAM_SUMMARY.replace("{live}", kinds.summary()),
        "downloads",
        auth=Auth.OWN,
        query=StreamQuery,
        allow_head=False,
        long_lived=True,
        response_media="text/event-stream",
        ok_description="The event stream",
        problems=(429, 503),
        headers=_NO_BUFFERING,
        codes=(*TICKET_CODES, Code.TOO_MANY_STREAMS, Code.SHUTTING_DOWN),
        params=(Param("Last-Event-ID", {"type": "string"}, "Resume after this event id"),),
        events=tuple(k.data for k in kinds.all),
    )


SSE_HUB: web.AppKey[Hub] = web.AppKey("sse_hub")

# Stream openings whose database queries may run at once (sse/endpoints.py): the rest wait their turn.
SSE_POOL_TURNS: web.AppKey[Turns] = web.AppKey("sse_openings")

# Stream openings past their head at once (sse/endpoints.py, opening_gate_middleware).
SSE_OPENING_GATE: web.AppKey[Turns] = web.AppKey("sse_opening_gate")

SSE_CALLERS: web.AppKey[UserLookups] = web.AppKey("sse_callers")

# The event kinds the stream serves (web/event_kinds.py).
SSE_KINDS: web.AppKey[EventKinds] = web.AppKey("sse_kinds")

# An opening's turn at the gate, left as soon as its opening is read (before it is sent).
OPENING_TURN: web.RequestKey[Turn] = web.RequestKey("sse_opening_turn")

# Whether the hub tends the process's garbage collector (sse/heap.py): the server process's
# app only, never an app among others in one process (tests).
TEND_HEAP: web.AppKey[bool] = web.AppKey("tend_heap")

"""An open SSE stream's life: the listener's start, a slow subscriber, pings and the token's
expiry, a browser-style client against the database, shutdown, and access withdrawn while it is
open."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pmd_service.api.aiohttp_adapter import DirectSocket
from pmd_service.core.settings import Settings
from pmd_service.features.registry import EVENT_KINDS
from pmd_service.sse import frames
from pmd_service.sse.endpoints import SSE_HUB
from pmd_service.sse.hub import SQL_LAST_EVENT, Hub
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from support.sse import SSE, Message, Stream, open_stream
from support.stack import eventually
from tests.helpers import (
    HUNG,
    DatabaseRelay,
    Serve,
    Served,
    ServedLikeServerPy,
    assert_problem,
    event_ids,
    ids,
    insert_bdr,
    mint_ticket,
    on_port,
    request_bdr,
    run_worker,
    step,
)
from tests.page_stack import artist

Client = TestClient[Any, Any]


async def test_the_listener_starts_on_a_database_slower_than_its_liveness(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # A starting server's database may answer late (every process starting at once): the
    # listener's first connection is not held to the bound that checks an idle one.
    relay = DatabaseRelay(settings.direct_url, delay=1.0)
    await relay.open()
    dsn = on_port(settings.direct_url, relay.port)
    hub = Hub(
        dsn,
        EVENT_KINDS,
        search_path=settings.search_path,
        max_per_user=2,
        queue_size=8,
        ping_seconds=10,
        liveness_seconds=0.5,
    )
    try:
        await hub.start()
        assert hub.last_seen == await pool.fetchval(SQL_LAST_EVENT)
    finally:
        await hub.stop()
        await relay.cut()


async def test_a_slow_subscriber_is_closed_and_catches_up(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    user = await factory.user()
    bdrs = [await insert_bdr(factory.pool, user, artworks=2) for _ in range(20)]
    server = await serve(sse_queue_size=4)
    url = str(server.make_url(SSE))
    async with open_stream(session, url, user.auth) as stream:
        watermark = int((await stream.opening())[-1].id or 0)
        # Twenty events in one commit reach the hub at once: more than this stream may queue.
        await factory.pool.execute(
            "UPDATE batch_download_requests SET status = 'processing' WHERE id = ANY($1::uuid[])",
            bdrs,
        )
        rest = await stream.ended()
        assert ids(rest) == []  # closed, not fed a partial burst
        assert server.app[SSE_HUB].subscriber_count == 0
    resume = {"Last-Event-ID": str(watermark)}
    async with open_stream(session, url, user.auth | resume) as stream:
        caught_up = await stream.opening()
        assert ids(caught_up) == await event_ids(factory.pool, user, after=watermark)
        assert len(ids(caught_up)) == 20
        assert {m.json()["status"] for m in caught_up if m.event == "bdr_update"} == {"processing"}


async def test_pings_then_timeout_when_the_token_expires(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    server = await serve(sse_ping_seconds=0.3, jwt_leeway_seconds=0)
    user = await factory.user()
    short = replace(user, token=factory.token(user.sqid, ttl=2))
    ticket = await mint_ticket(session, server, short)  # the ticket carries the token's expiry
    async with open_stream(session, str(server.make_url(SSE)), params={"ticket": ticket}) as s:
        await s.opening()
        rest: list[Message] = []
        while (msg := await s.next(5)) is not None:
            rest.append(msg)
    assert any(m.comment == "ping" for m in rest)
    assert [m.event for m in rest if m.comment is None] == ["timeout"]
    assert "expired" in rest[-1].json()["detail"]
    await assert_problem(
        await session.post(server.make_url(SSE + "-ticket"), headers=short.auth), 401
    )


class BrowserClient:
    """What a page does with EventSource and tickets: keep the last event id; when the stream
    drops, get a new ticket and open a new EventSource with `last_event_id`; apply `reset` and
    `bdr_update` to its state."""

    def __init__(self, session: aiohttp.ClientSession, server: TestServer, user: UserRow) -> None:
        self.session, self.server, self.user = session, server, user
        self.state: dict[str, dict[str, Any]] = {}
        self.last_event_id: str | None = None
        self.delivered: list[int] = []
        self.connections = 0

    async def connect(self) -> Stream:
        ticket = await mint_ticket(self.session, self.server, self.user)
        params = {"ticket": ticket}
        if self.last_event_id is not None:
            params["last_event_id"] = self.last_event_id
        resp = await self.session.get(self.server.make_url(SSE), params=params)
        assert resp.status == 200
        self.connections += 1
        return Stream(resp)

    def apply(self, msg: Message) -> None:
        if msg.id is not None:
            self.last_event_id = msg.id
        if msg.event == "reset":
            self.state.clear()
        elif msg.event == "bdr_update":
            item = msg.json()
            self.state[item["id"]] = item
            if msg.id is not None:
                self.delivered.append(int(msg.id))

    async def run(self, until: Callable[[], Awaitable[bool]], drop_every: int) -> None:
        while True:
            stream = await self.connect()
            try:
                for _ in range(drop_every):  # then the network "drops" the connection
                    msg = await stream.next(within=0.5)
                    if msg is None:
                        break
                    self.apply(msg)
            except TimeoutError:
                if await until():
                    return
            finally:
                stream.close()


async def test_browser_style_client_ends_with_the_database_state(
    served: Served, session: aiohttp.ClientSession, factory: Factory, settings: Settings
) -> None:
    server, client = served
    user, posts = await artist(factory, 4)
    made = [await request_bdr(client, user, posts[: i + 1]) for i in range(3)]
    manual = await insert_bdr(factory.pool, user)
    browser = BrowserClient(session, server, user)

    async def produce() -> None:
        worker = asyncio.create_task(run_worker(settings))
        for _ in range(40):
            await step(factory.pool, manual)
            await asyncio.sleep(0.01)
        await worker
        await client.delete(f"/api/pmd/bdr/{made[0]['id']}", headers=user.auth)  # ready → expired

    async def caught_up() -> bool:
        newest = await factory.pool.fetchval(
            "SELECT max(id)::text FROM stream_events WHERE user_id = $1", user.id
        )
        return producer.done() and browser.last_event_id == newest

    producer = asyncio.create_task(produce())
    await asyncio.wait_for(browser.run(caught_up, drop_every=7), 60)
    await producer

    listed = (await (await client.get("/api/pmd/bdr", headers=user.auth)).json())["items"]
    assert browser.state == {item["id"]: item for item in listed}
    assert browser.state[made[0]["id"]]["status"] == "expired"
    assert browser.state[manual]["progress"]["done"] == 40
    assert browser.connections > 5
    # Across all those reconnects, no event arrived twice and none out of order.
    assert browser.delivered == sorted(set(browser.delivered))


class WaitsAnHourForHandlers(ServedLikeServerPy):
    """As server.py runs, but with a runner that would wait an hour for open handlers: only
    the hub ending its streams itself lets this server close."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        kwargs |= {"handler_cancellation": False, "shutdown_timeout": 3600.0}
        return web.AppRunner(self.app, **kwargs)


async def test_shutdown_ends_open_streams_at_once(
    settings: Settings,
    pool: asyncpg.Pool,
    redis_clean: None,
    session: aiohttp.ClientSession,
    factory: Factory,
) -> None:
    server = WaitsAnHourForHandlers(create_app(settings))
    await server.start_server()
    hub = server.app[SSE_HUB]
    user = await factory.user()
    async with open_stream(session, str(server.make_url(SSE)), user.auth) as stream:
        await stream.opening()
        # Were the stream left to the runner, close() would take its hour: HUNG only turns
        # that into a failure, it is no claim about speed.
        await asyncio.wait_for(server.close(), HUNG)
        # Told to come back (elsewhere) after a spread-out pause, then the end.
        retry, reconnect = await stream.ended()
        assert retry.retry is not None and retry.retry >= 500
        assert reconnect.event == "reconnect" and reconnect.json()["reason"] == "shutdown"
    assert hub.closing and hub.subscriber_count == 0


async def test_streams_end_when_their_access_is_withdrawn(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    """A ban, a deactivation or a lost role ends the open streams it concerns within one check
    (SSE_ACCESS_CHECK_SECONDS), with an event saying why; the others go on, and each check is one
    query for every open stream of the process."""
    server = await serve(sse_access_check_seconds=0.3)
    hub = server.app[SSE_HUB]
    saw_all_six = asyncio.Event()
    real_check = hub.access_check
    assert real_check is not None

    async def watching(pairs: Any) -> Any:
        if len(pairs) == 6:
            saw_all_six.set()
        return await real_check(pairs)

    hub.access_check = watching
    url = str(server.make_url(SSE))
    mod, demoted = await factory.user(roles=["moderator"]), await factory.user(roles=["moderator"])
    user, promoted = await factory.user(), await factory.user()
    banned, deactivated = await factory.user(), await factory.user()
    bdr = await insert_bdr(factory.pool, user)
    ticket = await mint_ticket(session, server, demoted, target_sqid=user.sqid)
    async with (
        open_stream(session, url, user.auth) as own,
        open_stream(session, url, mod.auth, {"target_sqid": user.sqid}) as kept,
        open_stream(session, url, params={"ticket": ticket}) as demoted_s,
        open_stream(session, url, mod.auth, {"target_sqid": promoted.sqid}) as on_promoted,
        open_stream(session, url, banned.auth) as banned_s,
        open_stream(session, url, deactivated.auth) as deactivated_s,
    ):
        streams = (own, kept, demoted_s, on_promoted, banned_s, deactivated_s)
        for stream in streams:
            await stream.opening()
        # One check that saw all six first: a check begun before the last opening could
        # otherwise be the one that meets the changes below.
        await asyncio.wait_for(saw_all_six.wait(), 30)
        # Untyped literals: the roles column is json on the host's schema, jsonb standalone.
        await factory.pool.execute(
            "UPDATE users SET roles = '[\"user\"]' WHERE id = $1", demoted.id
        )
        await factory.pool.execute(
            "UPDATE users SET roles = '[\"moderator\"]' WHERE id = $1", promoted.id
        )
        await factory.pool.execute(
            "UPDATE users SET banned_until = now() + interval '1 day' WHERE id = $1", banned.id
        )
        await factory.pool.execute(
            "UPDATE users SET deactivated = true WHERE id = $1", deactivated.id
        )
        ends = {}
        for name, stream in (
            ("demoted", demoted_s),
            ("on_promoted", on_promoted),
            ("banned", banned_s),
            ("deactivated", deactivated_s),
        ):
            rest = [m for m in await stream.ended(within=30) if m.comment is None]
            assert [m.event for m in rest] == ["access_revoked"], (name, rest)
            ends[name] = rest[0].json()
        assert ends["demoted"]["reason"] == "not_allowed" and ends["demoted"]["status"] == 403
        assert "Only moderators" in ends["demoted"]["detail"]
        assert ends["on_promoted"]["reason"] == "not_allowed"
        assert "moderator's posts" in ends["on_promoted"]["detail"]
        assert ends["banned"]["reason"] == "banned" and ends["banned"]["status"] == 403
        assert "banned until" in ends["banned"]["detail"]
        assert ends["deactivated"]["reason"] == "deactivated"
        assert ends["deactivated"]["status"] == 403
        # The streams that keep their access go on receiving the user's updates.
        await step(factory.pool, bdr)
        expected = (await event_ids(factory.pool, user))[-1:]
        for stream in (own, kept):
            assert ids(await stream.updates(1)) == expected
    assert hub.revoked == 4
    await assert_problem(await session.get(url, headers=banned.auth), 403)


async def test_a_backed_up_stream_gets_every_event_once_and_in_order_when_it_drains(
    settings: Settings,
) -> None:
    # A client that stops reading: past the transport's high-water mark its events wait in the
    # stream's queue, and once it reads again every one goes out, in order, once.
    hub = Hub(
        settings.direct_url,
        EVENT_KINDS,
        max_per_user=1,
        queue_size=10_000,
        ping_seconds=60,
        liveness_seconds=5,
    )
    ours, theirs = socket.socketpair()
    for end, option in ((ours, socket.SO_SNDBUF), (theirs, socket.SO_RCVBUF)):
        end.setsockopt(socket.SOL_SOCKET, option, 4096)
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    transport.set_write_buffer_limits(high=4096)
    out = DirectSocket(transport)
    out.chunked = False  # HTTP/1.0 framing: the bytes as they are
    sub = hub.subscribe(1, 1, out, time.time() + 60)
    transport.set_protocol(sub)
    sub.flush()
    sent = [frames.event(b"bdr_update", {"pad": "x" * 1000}, n) for n in range(1, 2001)]
    paused = False
    for n, frame in enumerate(sent, 1):
        sub.deliver([(n, frame, frames.chunk(frame), False)])
        paused = paused or not sub.live
    assert paused, "the socket never backed up: the queue was not tried"
    got = bytearray()
    whole = sum(map(len, sent))
    async with asyncio.timeout(HUNG):
        while len(got) < whole:
            got += await loop.sock_recv(theirs, 65536)
    assert bytes(got) == b"".join(sent)
    theirs.close()

    async def let_go() -> bool:
        return hub.subscriber_count == 0

    await eventually(let_go, 5, "the hub letting the closed connection go")
    assert hub.ended_by == {"gone": 1}

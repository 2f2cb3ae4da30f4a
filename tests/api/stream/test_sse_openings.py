"""SSE openings under load: their turns at the pool, their batched user and target lookups
(tickets too), what one bad caller in a batch costs the others, and openings at shutdown."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, get_port_socket

from pmd_service.api import tickets
from pmd_service.api.keys import DB_POOL
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.sse import endpoints
from pmd_service.sse.endpoints import (
    OPENINGS_AT_ONCE,
    SSE_CALLERS,
    SSE_HUB,
    SSE_OPENING_GATE,
    SSE_POOL_TURNS,
)
from pmd_service.sse.pool_turns import Turns
from pmd_service.sse.user_lookups import UserLookups
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from support.sse import SSE, Stream, open_stream
from tests.helpers import (
    HUNG,
    Serve,
    ServedLikeServerPy,
    assert_problem,
    event_ids,
    eventually,
    insert_bdr,
    mint_ticket,
)


async def _asked_behind_the_turn(
    server: TestServer, asked: Sequence[Awaitable[aiohttp.ClientResponse]]
) -> list[aiohttp.ClientResponse]:
    """Every request sent while the openings' turn at the pool is held, so that every lookup
    queues (none may be answered meanwhile); their answers once the turn is let go."""
    async with server.app[SSE_POOL_TURNS]:
        pending = [asyncio.ensure_future(a) for a in asked]
        await asyncio.sleep(0.3)
        assert not any(p.done() for p in pending)
    return list(await asyncio.wait_for(asyncio.gather(*pending), HUNG))


async def _each_sees_its_own(
    users: Sequence[UserRow], answers: Sequence[aiohttp.ClientResponse], mine: dict[int, str]
) -> None:
    """Each user's opening answered 200 with a snapshot of its own BDR and nobody else's."""
    for user, resp in zip(users, answers, strict=False):
        assert resp.status == 200, await resp.text()
        snapshot = await Stream(resp).opening()
        assert [m.json()["id"] for m in snapshot if m.event == "bdr_update"] == [mine[user.id]]


async def _each_opens(answers: Sequence[aiohttp.ClientResponse]) -> None:
    """Each answered 200 with a whole opening; all closed after."""
    try:
        for resp in answers:
            assert resp.status == 200, await resp.text()
            await Stream(resp).opening()
    finally:
        for resp in answers:
            resp.close()


async def test_openings_wait_their_turn_instead_of_a_503_and_leave_the_pool_to_others(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    # A reconnect storm: every opening's turn is taken (half the pool of 2: one), so another
    # opening waits, past the pool's acquire timeout, and is not answered 503; the pool keeps
    # serving other requests meanwhile.
    server = await serve(db_pool_max=2, db_acquire_timeout=0.2)
    user = await factory.user()
    url = str(server.make_url(SSE))
    async with server.app[SSE_POOL_TURNS]:
        waiting = asyncio.ensure_future(session.get(url, headers=user.auth))
        await asyncio.sleep(0.6)  # three acquire timeouts
        assert not waiting.done()
        other = await session.get(server.make_url("/api/pmd/bdr"), headers=user.auth)
        assert other.status == 200, await other.text()
    resp = await asyncio.wait_for(waiting, HUNG)
    try:
        assert resp.status == 200, await resp.text()
        await Stream(resp).opening()
    finally:
        resp.close()


async def test_openings_past_the_gate_are_bounded_and_the_rest_wait_their_turn(
    settings: Settings, session: aiohttp.ClientSession, factory: Factory, redis_clean: None
) -> None:
    """A flood of openings: a gate's worth (OPENINGS_AT_ONCE; 4 here) are handled at once (here
    all held at the pool's turn), the others wait at the gate, before any handler, and every
    one is answered once the turn is let go. A flood all handled at once fragmented the heap
    by their short-lived objects (sse/endpoints.py)."""
    assert OPENINGS_AT_ONCE >= 64  # enough for lookups to go many to a query
    app = create_app(msgspec.structs.replace(settings, db_pool_max=2))
    app[SSE_OPENING_GATE] = gate = Turns(4)
    server = ServedLikeServerPy(app)
    await server.start_server()
    try:
        url = str(server.make_url(SSE))
        users = [await factory.user() for _ in range(12)]
        async with server.app[SSE_POOL_TURNS]:
            pending = [asyncio.ensure_future(session.get(url, headers=u.auth)) for u in users]

            async def queued() -> bool:
                return gate.waiting == 8

            await eventually(queued, HUNG, lambda: f"{gate.waiting} waiting at the gate")
        await _each_opens(await asyncio.wait_for(asyncio.gather(*pending), HUNG))
    finally:
        await server.close()


async def test_a_ticket_is_spent_as_its_opening_arrives_so_waiting_at_the_gate_outlives_it(
    settings: Settings, session: aiohttp.ClientSession, factory: Factory, redis_url: str
) -> None:
    """A reconnect storm's openings may wait at the gate longer than a ticket lives: each
    ticket is spent as its request arrives, so its life no longer runs while it waits."""
    app = create_app(settings)
    app[SSE_OPENING_GATE] = gate = Turns(1)
    server = ServedLikeServerPy(app)
    await server.start_server()
    redis = create_redis(redis_url)
    try:
        user = await factory.user()
        ticket = await mint_ticket(session, server, user)
        where = tickets.redis_key(ticket)
        async with gate:
            waiting = asyncio.ensure_future(
                session.get(server.make_url(SSE), params={"ticket": ticket})
            )

            async def spent() -> bool:
                return gate.waiting == 1 and not await redis.exists(where)

            # Well inside the ticket's life, which would otherwise end it here.
            await eventually(spent, tickets.TICKET_SECONDS / 3, "the ticket spent on arrival")
            await asyncio.sleep(0.2)
            assert not waiting.done()  # still waiting: Redis's expiry can no longer reach it
        await _each_opens([await asyncio.wait_for(waiting, HUNG)])
    finally:
        await redis.aclose()
        await server.close()


async def test_openings_at_once_share_their_user_lookups_and_each_gets_its_own_answer(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    # A reconnect storm: many openings at once, one turn at the pool (half of 2). Their
    # callers are looked up many to a query, and each opening still gets its own answer.
    server = await serve(db_pool_max=2)
    url = str(server.make_url(SSE))
    users = [await factory.user() for _ in range(40)]
    mine = {u.id: await insert_bdr(factory.pool, u) for u in users}
    banned = await factory.user(banned_until=datetime.now(UTC) + timedelta(days=1))
    gone = replace(users[0], token=factory.token("nosuchsqid"))
    lookups = server.app[SSE_CALLERS]
    before = lookups.queries
    asked = [session.get(url, headers=u.auth) for u in [*users, banned, gone]]
    answers = await _asked_behind_the_turn(server, asked)
    try:
        await _each_sees_its_own(users, answers, mine)
        await assert_problem(answers[-2], 403)  # banned
        await assert_problem(answers[-1], 401)  # names nobody
    finally:
        for resp in answers:
            resp.close()
    # 42 lookups: the first may have gone alone before the turn was taken; the rest share.
    assert lookups.looked_up >= 42
    assert lookups.queries - before <= 3, lookups.queries - before


async def test_moderators_openings_at_once_share_their_target_lookups_too(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    # Moderators' streams of users (`target_sqid`), by header and by ticket, many at once:
    # the targets are looked up many to a query as the callers are; a target that is nobody,
    # or that a caller may not watch, fails only its own opening.
    server = await serve(db_pool_max=2)
    url = str(server.make_url(SSE))
    mods = [await factory.user(roles=["moderator"]) for _ in range(12)]
    users = [await factory.user() for _ in range(12)]
    mine = {u.id: await insert_bdr(factory.pool, u) for u in users}
    plain = await factory.user()
    by_ticket = [
        await mint_ticket(session, server, m, target_sqid=u.sqid)
        for m, u in zip(mods[6:], users[6:], strict=True)
    ]
    lookups = server.app[SSE_CALLERS]
    before_queries, before_looked_up = lookups.queries, lookups.looked_up
    asked = [
        *(
            session.get(url, headers=m.auth, params={"target_sqid": u.sqid})
            for m, u in zip(mods[:6], users[:6], strict=True)
        ),
        *(session.get(url, params={"ticket": t}) for t in by_ticket),
        session.get(url, headers=mods[0].auth, params={"target_sqid": "nosuchsqid"}),
        session.get(url, headers=plain.auth, params={"target_sqid": users[0].sqid}),
    ]
    answers = await _asked_behind_the_turn(server, asked)
    try:
        await _each_sees_its_own(users, answers, mine)
        await assert_problem(answers[-2], 404)  # a target that is nobody
        await assert_problem(answers[-1], 403)  # not a moderator: never looked up
    finally:
        for resp in answers:
            resp.close()
    # 14 callers and 12 targets (and the unknown one's, when it is a public id at all; the
    # last caller's target is refused before any lookup), many to a query.
    looked_up, queries = lookups.looked_up - before_looked_up, lookups.queries - before_queries
    assert looked_up >= 14 + 12, looked_up
    assert queries <= 10, queries  # one each would be 26


async def test_tickets_minted_at_once_share_their_user_lookups_in_the_openings_turns(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    # A ticket storm (browsers reconnecting: a POST each, then the GET): the POSTs' callers
    # are looked up as the openings' are, many to a query in the openings' turn at the pool,
    # not a query each queued for the pool (which answered a storm 503 by the ten thousand).
    server = await serve(db_pool_max=2)
    users = [await factory.user() for _ in range(20)]
    url = server.make_url("/api/pmd/bdr/sse-ticket")
    lookups = server.app[SSE_CALLERS]
    before = lookups.queries
    answers = await _asked_behind_the_turn(
        server, [session.post(url, headers=u.auth) for u in users]
    )
    try:
        for resp in answers:
            assert resp.status == 200, await resp.text()
    finally:
        for resp in answers:
            resp.close()
    assert lookups.looked_up >= 20
    assert lookups.queries - before <= 3, lookups.queries - before
    ticket = await mint_ticket(session, server, users[0])  # and each opens its stream
    async with open_stream(session, str(server.make_url(SSE)), params={"ticket": ticket}) as stream:
        await stream.opening()


async def test_openings_are_not_refused_while_a_pooled_connection_is_being_opened(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    # An opening flood: the pool (four, two turns for openings) has one connection open and
    # must open another while openings wait. Opening it takes far longer than this acquire
    # timeout, as it took longer than 5 s in a 100,000-stream flood; with slots free all the
    # while, no opening may be answered 503 "no database connection came free".
    server = await serve(db_pool_min=1, db_pool_max=4, db_acquire_timeout=0.000_001)
    url = str(server.make_url(SSE))
    users = [await factory.user() for _ in range(20)]
    asked = [session.get(url, headers=u.auth) for u in users * 2]
    await _each_opens(await asyncio.wait_for(asyncio.gather(*asked), HUNG))


# JSON's "\ud800": a lone surrogate, which asyncpg cannot encode.
LONE_SURROGATE = "\ud800"


async def test_a_token_naming_a_lone_surrogate_fails_only_its_own_opening(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    """Eight openings and one whose `sub` is a lone surrogate, their lookups in one query: the
    eight are answered (it made six or seven of them 500), the one is a 401."""
    server = await serve(db_pool_max=2)
    url = str(server.make_url(SSE))
    users = [await factory.user() for _ in range(8)]
    odd = replace(users[0], token=factory.token(LONE_SURROGATE))
    async with server.app[SSE_POOL_TURNS]:  # the turn is busy: every lookup queues
        pending = [asyncio.ensure_future(session.get(url, headers=u.auth)) for u in [*users, odd]]
        await asyncio.sleep(0.3)
    answers = await asyncio.wait_for(asyncio.gather(*pending), HUNG)
    try:
        assert [r.status for r in answers] == [200] * 8 + [401]
        problem = await assert_problem(answers[-1], 401)
        assert "`sub`" in problem["detail"]
        assert not any(u.sqid in problem["detail"] for u in users)
    finally:
        for resp in answers:
            resp.close()


async def test_a_lookup_refused_for_its_value_fails_alone(
    pool: asyncpg.Pool, factory: Factory
) -> None:
    """A public id the query cannot take (here one a token could no longer carry) fails its
    own lookup only, its error naming no other id; the others in its query are answered."""
    users = [await factory.user() for _ in range(8)]
    turns = Turns(1)
    lookups = UserLookups(pool, turns, lambda: None)
    async with turns:  # one query for all of them, once the turn is free
        pending = [
            asyncio.ensure_future(lookups.by_sqid(sqid))
            for sqid in [*(u.sqid for u in users[:4]), LONE_SURROGATE, *(u.sqid for u in users[4:])]
        ]
        await asyncio.sleep(0.05)
    answers = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), HUNG)
    refused = answers.pop(4)
    assert [row["id"] for row in answers] == [u.id for u in users]  # type: ignore[index]
    assert isinstance(refused, asyncpg.DataError)
    assert not any(u.sqid in str(refused) for u in users), str(refused)
    await lookups.stop()


async def test_lookups_still_waiting_at_shutdown_are_cancelled_and_leave_no_task(
    pool: asyncpg.Pool, factory: Factory
) -> None:
    user = await factory.user()
    turns = Turns(1)
    lookups = UserLookups(pool, turns, lambda: None)
    row = await lookups.by_sqid(user.sqid)  # alone: sent at once
    assert row is not None and row["id"] == user.id
    async with turns:  # the pool's turn is taken: the next lookups wait
        waiting = [asyncio.ensure_future(lookups.by_sqid(user.sqid)) for _ in range(5)]
        await asyncio.sleep(0.05)
        await lookups.stop()
    for lookup in waiting:
        with pytest.raises(asyncio.CancelledError):
            await lookup
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "sse-user-lookups"]


async def test_an_opening_that_waited_through_the_start_of_a_shutdown_is_a_503(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    # Queued behind a storm's openings when SIGTERM came: by its turn the pool is closing. It is
    # told to reconnect elsewhere, never answered 500.
    server = await serve(db_pool_max=2)
    user = await factory.user()
    async with server.app[SSE_POOL_TURNS]:
        waiting = asyncio.ensure_future(session.get(server.make_url(SSE), headers=user.auth))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        server.app[SSE_HUB].close_all()
        await server.app[DB_POOL].close()  # as the app's cleanup does, after the streams end
    resp = await asyncio.wait_for(waiting, HUNG)
    body = await assert_problem(resp, 503, "shutting_down")
    assert resp.headers["Retry-After"] == "2"
    assert "shutting down" in body["detail"]


async def test_a_client_gone_before_the_answer_is_no_database_outage(
    settings: Settings, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # A stream's opening that waited its turn while its client left: writing the headers
    # raises aiohttp's ConnectionError, which says nothing about the database. A route of the
    # test's own raises it the way aiohttp's writer does (the race is not reproducible).
    async def left(request: web.Request) -> web.StreamResponse:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    app = create_app(settings)
    app.router.add_get("/left", left)
    server = ServedLikeServerPy(app)
    await server.start_server()
    try:
        with caplog.at_level("INFO"):
            resp = await session.get(server.make_url("/left"))
            assert resp.status == 499
        assert "went away before the answer" in caplog.text
        assert "database unavailable" not in caplog.text
    finally:
        await server.close()


def _small_send_buffers(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """The server's listening socket, its connections' send buffers (which they inherit) the
    smallest: the kernel would otherwise take megabytes of an opening that is never read."""
    sock = get_port_socket(host, port, family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return sock


def _never_reads(server: TestServer, user: UserRow, last_event_id: int) -> socket.socket:
    """A client that asks for its stream and never reads a byte of the answer: a socket with
    the smallest receive buffer, so that the opening fills it and the server's writes wait."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect((server.host, server.port))
    head = (
        f"GET {SSE} HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: {user.auth['Authorization']}"
        f"\r\nLast-Event-ID: {last_event_id}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


async def test_clients_that_never_read_their_opening_hold_no_turn_at_the_gate(
    settings: Settings, session: aiohttp.ClientSession, factory: Factory, redis_clean: None
) -> None:
    """Openings whose clients never read them (each far larger than the sockets' buffers) are
    sent after their turn at the gate is left: with every turn's worth of them stuck, the next
    opening still gets its turn and its stream."""
    app = create_app(settings)
    app[SSE_OPENING_GATE] = Turns(2)
    server = ServedLikeServerPy(app, socket_factory=_small_send_buffers)
    await server.start_server()
    stuck: list[socket.socket] = []
    try:
        user = await factory.user()
        bdrs = [await insert_bdr(factory.pool, user) for _ in range(20)]
        first = (await event_ids(factory.pool, user))[0]
        for _ in range(40):  # 800 progress events: the resumed opening replays them all
            await factory.pool.execute(
                "UPDATE batch_download_requests SET progress_done = progress_done + 1"
                " WHERE id = ANY($1::uuid[])",
                bdrs,
            )
        hub = server.app[SSE_HUB]
        stuck = [_never_reads(server, user, first) for _ in range(4)]

        async def all_subscribed() -> bool:
            return hub.subscriber_count == len(stuck)

        await eventually(all_subscribed, HUNG, lambda: f"{hub.subscriber_count} subscribed")
        other = await factory.user()
        mine = await insert_bdr(factory.pool, other)
        resp = await asyncio.wait_for(session.get(server.make_url(SSE), headers=other.auth), HUNG)
        try:
            assert resp.status == 200, await resp.text()
            opening = await asyncio.wait_for(Stream(resp).opening(), HUNG)
            assert [m.json()["id"] for m in opening if m.event == "bdr_update"] == [mine]
        finally:
            resp.close()
    finally:
        for sock in stuck:
            sock.close()
        await server.close()


async def test_a_client_that_never_reads_its_opening_is_cut_off(
    settings: Settings, factory: Factory, redis_clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its opening not out within OPENING_SEND_SECONDS (a moment here), the connection is
    dropped and the stream ended, whatever it held unsent."""
    monkeypatch.setattr(endpoints, "OPENING_SEND_SECONDS", 0.5)
    server = ServedLikeServerPy(create_app(settings), socket_factory=_small_send_buffers)
    await server.start_server()
    try:
        user = await factory.user()
        bdrs = [await insert_bdr(factory.pool, user) for _ in range(20)]
        first = (await event_ids(factory.pool, user))[0]
        for _ in range(40):
            await factory.pool.execute(
                "UPDATE batch_download_requests SET progress_done = progress_done + 1"
                " WHERE id = ANY($1::uuid[])",
                bdrs,
            )
        hub = server.app[SSE_HUB]
        sock = _never_reads(server, user, first)
        try:

            async def cut_off() -> bool:
                return hub.opened == hub.ended == 1

            await eventually(cut_off, HUNG, lambda: f"{hub.opened} opened, {hub.ended} ended")
        finally:
            sock.close()
    finally:
        await server.close()

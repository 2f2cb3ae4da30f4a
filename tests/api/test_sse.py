"""The SSE stream over real TCP: snapshot, live events, resume, isolation, tickets, the listener
killed or frozen, slow subscribers, the cap, pings, token expiry, and an EventSource-style client."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from pmd_service.core.queue import create_redis
from pmd_service.core.settings import Settings
from pmd_service.sse import service, tickets
from pmd_service.sse.callers import UserLookups
from pmd_service.sse.turns import Turns
from pmd_service.web.app import create_app
from pmd_service.web.keys import DB_POOL, SSE_CALLERS, SSE_HUB, SSE_OPENINGS
from support.seeding import Factory, UserRow
from support.sse import SSE, Message, Stream, open_stream
from tests.helpers import (
    HUNG,
    Serve,
    ServedLikeServerPy,
    assert_problem,
    event_ids,
    eventually,
    fetch_item,
    ids,
    listener_pids,
    mint_ticket,
    request_bdr,
    run_worker,
)

Client = TestClient[Any, Any]


# --- an SSE client -------------------------------------------------------------------------


# --- rows and events -----------------------------------------------------------------------


async def insert_bdr(pool: asyncpg.Pool, user: UserRow, artworks: int = 128) -> str:
    """A BDR row written straight to the table (its insert is an event like any other)."""
    bdr_id = await pool.fetchval(
        """
        INSERT INTO batch_download_requests (user_id, post_ids, artwork_count)
        SELECT $1, array_agg(g), $2 FROM generate_series(1, $2) g
        RETURNING id::text
        """,
        user.id,
        artworks,
    )
    assert isinstance(bdr_id, str)
    return bdr_id


async def step(pool: asyncpg.Pool, bdr_id: str) -> None:
    """One progress event."""
    await pool.execute(
        "UPDATE batch_download_requests SET status = 'processing', progress_done = progress_done + 1"
        " WHERE id = $1::uuid",
        bdr_id,
    )


# --- tests ---------------------------------------------------------------------------------


async def test_snapshot_then_live_updates_as_the_worker_builds(
    serve: Serve,
    aiohttp_client: AiohttpClient,
    session: aiohttp.ClientSession,
    factory: Factory,
    settings: Settings,
) -> None:
    server = await serve()
    client: Client = await aiohttp_client(server)
    owner = await factory.user()
    posts = [await factory.post(owner) for _ in range(3)]
    older = [await request_bdr(client, owner, [p.id]) for p in posts[:2]]

    async with open_stream(session, str(server.make_url(SSE)), owner.auth) as stream:
        resp = stream.resp
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Accel-Buffering"] == "no"
        opening = await stream.opening()
        assert opening[0].retry is not None and opening[0].event is None
        snapshot = opening[1:-1]
        assert [m.event for m in snapshot] == ["bdr_update", "bdr_update"]
        assert all(m.id is None for m in snapshot)  # the snapshot is state, not events
        listed = (await (await client.get("/api/pmd/bdr", headers=owner.auth)).json())["items"]
        assert [m.json() for m in snapshot] == listed
        assert {m.json()["id"] for m in snapshot} == {b["id"] for b in older}
        connected = opening[-1]
        watermark = int(connected.id or 0)
        assert watermark == max(await event_ids(factory.pool, owner))

        item = await request_bdr(client, owner, [p.id for p in posts])
        await run_worker(settings)
        expected = await event_ids(factory.pool, owner, after=watermark)
        live = await stream.updates(len(expected))
        assert ids(live) == expected
        mine = [m.json() for m in live if m.json()["id"] == item["id"]]
        statuses = [m["status"] for m in mine]
        assert statuses[0] == "pending" and statuses[-1] == "ready"
        assert "processing" in statuses
        done = [m["progress"]["done"] for m in mine]
        assert done == sorted(done) and done[-1] == 3
        assert mine[-1] == await fetch_item(client, owner, item["id"])
        assert mine[-1]["download_url"].startswith(
            f"/api/pmd/bdr/{item['id']}/download?target_sqid="
        )


async def test_a_removed_download_reaches_the_stream_as_removed_not_expired(
    serve: Serve,
    aiohttp_client: AiohttpClient,
    session: aiohttp.ClientSession,
    factory: Factory,
    settings: Settings,
) -> None:
    server = await serve()
    client: Client = await aiohttp_client(server)
    owner = await factory.user()
    item = await request_bdr(client, owner, [(await factory.post(owner)).id])
    await run_worker(settings)
    async with open_stream(session, str(server.make_url(SSE)), owner.auth) as stream:
        snapshot = [m.json() for m in await stream.opening() if m.event == "bdr_update"]
        assert [(i["status"], i["removed_at"]) for i in snapshot] == [("ready", None)]
        assert (await client.delete(f"/api/pmd/bdr/{item['id']}", headers=owner.auth)).status == 204
        (event,) = await stream.updates(1)
    assert event.json()["status"] == "expired" and event.json()["removed_at"] is not None
    assert event.json() == await fetch_item(client, owner, item["id"])


async def test_routes_auth_and_openapi(serve: Serve, session: aiohttp.ClientSession) -> None:
    server = await serve()
    # /api/pmd/bdr/{id} must not swallow /api/pmd/bdr/sse ("not a UUID" would be a 400).
    body = await assert_problem(await session.get(server.make_url(SSE)), 401)
    assert "ticket" in body["detail"]
    await assert_problem(await session.post(server.make_url(SSE + "-ticket")), 401)
    bad = {"Authorization": "Bearer not-a-jwt"}
    await assert_problem(await session.get(server.make_url(SSE), headers=bad), 401)
    doc = await (await session.get(server.make_url("/openapi.json"))).json()
    stream_op = doc["paths"][SSE]["get"]
    assert "text/event-stream" in stream_op["responses"]["200"]["content"]
    assert {"429", "401"} <= set(stream_op["responses"])
    assert {p["name"] for p in stream_op["parameters"]} >= {"ticket", "Last-Event-ID"}
    assert "post" in doc["paths"][SSE + "-ticket"]


async def test_other_users_events_never_arrive_and_tickets_are_single_use(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory, redis_url: str
) -> None:
    server = await serve()
    url = str(server.make_url(SSE))
    alice, bob = await factory.user(), await factory.user()
    bob_bdr = await insert_bdr(factory.pool, bob)

    forged = "A" * 43
    body = await assert_problem(await session.get(url, params={"ticket": forged}), 401)
    assert "single-use" in body["detail"]

    ticket = await mint_ticket(session, server, alice)
    # Bob cannot spend Alice's ticket on Bob's stream, nor Alice on someone else's.
    await assert_problem(
        await session.get(url, params={"ticket": await mint_ticket(session, server, alice),
                                       "target_sqid": bob.sqid}), 400)  # fmt: skip
    async with open_stream(session, url, params={"ticket": ticket}) as stream:
        await stream.opening()
        # The ticket is spent: a second use (another tab, a replay) is refused.
        await assert_problem(await session.get(url, params={"ticket": ticket}), 401)
        for _ in range(5):
            await step(factory.pool, bob_bdr)
        mine = await insert_bdr(factory.pool, alice)
        got = await stream.updates(1)
        # Bob's five events were committed first; had any been routed here, they would have
        # arrived before Alice's.
        assert [m.json()["id"] for m in got] == [mine]
        assert ids(got) == await event_ids(factory.pool, alice)

    expiring = await mint_ticket(session, server, alice)
    redis = create_redis(redis_url)
    try:
        assert await redis.exists(tickets.redis_key(expiring))
        assert not await redis.exists(tickets.redis_key(ticket))  # redeemed means deleted
        await redis.pexpire(tickets.redis_key(expiring), 1)

        async def expired() -> bool:
            return not await redis.exists(tickets.redis_key(expiring))

        await eventually(expired, 5, "the ticket's key expiring in Redis")
    finally:
        await redis.aclose()
    await assert_problem(await session.get(url, params={"ticket": expiring}), 401)


async def test_last_event_id_resumes_with_exactly_the_missed_events(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    server = await serve()
    url = str(server.make_url(SSE))
    user, other = await factory.user(), await factory.user()
    bdr = await insert_bdr(factory.pool, user)
    async with open_stream(session, url, user.auth) as stream:
        await stream.opening()
        for _ in range(3):
            await step(factory.pool, bdr)
        seen = await stream.updates(3)
    last = ids(seen)[-1]

    # While disconnected: more of this user's events, and another user's.
    other_bdr = await insert_bdr(factory.pool, other)
    for _ in range(4):
        await step(factory.pool, bdr)
        await step(factory.pool, other_bdr)
    missed = await event_ids(factory.pool, user, after=last)
    assert len(missed) == 4

    async with open_stream(session, url, user.auth | {"Last-Event-ID": str(last)}) as stream:
        opening = await stream.opening()
        assert opening[0].retry is not None
        assert [m.event for m in opening[1:]] == ["bdr_update"] * 4 + ["connected"]
        assert ids(opening) == missed  # only the missed ones, in order, no snapshot
        assert [m.json()["progress"]["done"] for m in opening[1:-1]] == [4, 5, 6, 7]
        assert opening[-1].json() == {"resumed": True}
        assert opening[-1].id == str(missed[-1])
        await step(factory.pool, bdr)  # and live events follow, once
        live = await stream.updates(1)
        assert ids(live) == await event_ids(factory.pool, user, after=missed[-1])

    # The query parameter does the same for a new EventSource (which cannot set the header).
    params = {"last_event_id": str(missed[1])}
    async with open_stream(session, url, user.auth, params) as stream:
        assert ids(await stream.opening()) == await event_ids(factory.pool, user, after=missed[1])

    # Too old (purged by the daily cleanup), or never issued: reset, then the snapshot. A
    # purged event is a day old, long gone from what a server holds in memory (its hub
    # answers resumes from the events it read since it started, for an hour at most): a
    # server started now holds none of these.
    await factory.pool.execute("DELETE FROM bdr_events WHERE id <= $1", missed[0])
    url = str((await serve()).make_url(SSE))
    for stale in (str(last), "999999999", "not-a-number"):
        async with open_stream(session, url, user.auth | {"Last-Event-ID": stale}) as stream:
            opening = await stream.opening()
            assert [m.event for m in opening[1:]] == ["reset", "bdr_update", "connected"]
            assert opening[2].json()["id"] == bdr and opening[2].json()["progress"]["done"] == 8
            assert opening[-1].json() == {"resumed": False}


async def test_a_resume_is_answered_from_the_hubs_memory_exactly_as_the_table_answers(
    serve: Serve, factory: Factory
) -> None:
    """A reconnect storm's openings carry Last-Event-ID; the hub answers them from the events
    it has read (no query), and must say exactly what `bdr_events` would."""
    server = await serve()
    hub = server.app[SSE_HUB]
    user, other = await factory.user(), await factory.user()
    mine, theirs = await insert_bdr(factory.pool, user), await insert_bdr(factory.pool, other)
    for _ in range(3):
        await step(factory.pool, mine)
        await step(factory.pool, theirs)
    newest = await factory.pool.fetchval("SELECT max(id) FROM bdr_events")

    async def read_all() -> bool:
        return bool(hub.recent.newest == newest)

    await eventually(read_all, HUNG, "the hub reading every event")
    own = await event_ids(factory.pool, user)
    everyone = await factory.pool.fetch("SELECT id FROM bdr_events ORDER BY id")
    # After each event there is, the user's own and the other's: the same bytes both ways.
    for (after,) in everyone:
        memory = service.resumed_from_memory(hub.recent, user.id, after)
        table = await service.opening(factory.pool, user.id, after)
        assert memory is not None, after
        assert memory.body == table.body, after
        assert memory.watermark == newest  # every later event reaches the stream live
    assert service.resumed_from_memory(hub.recent, user.id, own[-1]) is not None

    # What the hub cannot vouch for goes to the table: never an event id, newer than it
    # has read, or older than what it holds (a server started after those events).
    for unknown in (0, -1, newest + 1000):
        assert service.resumed_from_memory(hub.recent, user.id, unknown) is None
    fresh = (await serve()).app[SSE_HUB]
    assert service.resumed_from_memory(fresh.recent, user.id, own[0]) is None
    assert service.resumed_from_memory(fresh.recent, user.id, None) is None


async def test_listener_killed_while_events_commit_loses_and_doubles_nothing(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    server = await serve()
    hub = server.app[SSE_HUB]
    user, other = await factory.user(), await factory.user()
    bdrs = [await insert_bdr(factory.pool, user) for _ in range(2)]
    noise = await insert_bdr(factory.pool, other)
    async with open_stream(session, str(server.make_url(SSE)), user.auth) as stream:
        watermark = int((await stream.opening())[-1].id or 0)

        async def commit() -> None:
            for i in range(60):
                await step(factory.pool, bdrs[i % 2])
                await step(factory.pool, noise)
                await asyncio.sleep(0.01)

        async def kill() -> int:
            kills = 0
            for n in range(3):
                # Each kill lands while events commit: after 15, 30 and 45 of the 60.
                async def committed(n: int = n) -> bool:
                    return len(await event_ids(factory.pool, user, watermark)) >= 15 * (n + 1)

                await eventually(committed, 10, f"{15 * (n + 1)} events committed")
                (pid,) = await listener_pids(factory.pool)
                assert await factory.pool.fetchval("SELECT pg_terminate_backend($1)", pid)
                kills += 1

                async def reconnected(pid: int = pid) -> bool:
                    return await listener_pids(factory.pool) not in ([], [pid])

                await eventually(reconnected, 10, "the hub's new LISTEN connection")
            return kills

        _, kills = await asyncio.gather(commit(), kill())
        expected = await event_ids(factory.pool, user, after=watermark)
        assert len(expected) == 60
        got = await stream.updates(60)
        assert ids(got) == expected  # every event, once, in commit order
        await step(factory.pool, bdrs[0])
        assert ids(await stream.updates(1)) == await event_ids(factory.pool, user, expected[-1])
    assert kills == 3 and hub.reconnects >= 3
    assert len(await listener_pids(factory.pool)) == 1  # one LISTEN connection, still


async def test_a_silent_listener_connection_is_noticed_and_replaced(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    """The connection stays open but the backend never answers (a frozen host, a half-open
    TCP connection): no termination callback fires, so only the periodic check can see it."""
    server = await serve(sse_liveness_seconds=0.3)
    hub = server.app[SSE_HUB]
    (pid,) = await listener_pids(factory.pool)
    try:
        os.kill(pid, 0)
    except (PermissionError, ProcessLookupError):
        pytest.skip("PostgreSQL is not a local process this test may signal")
    user = await factory.user()
    bdr = await insert_bdr(factory.pool, user)
    async with open_stream(session, str(server.make_url(SSE)), user.auth) as stream:
        watermark = int((await stream.opening())[-1].id or 0)
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(5):  # committed while the listener cannot hear them
                await step(factory.pool, bdr)
            got = await stream.updates(5, within=15)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert ids(got) == await event_ids(factory.pool, user, after=watermark)
    assert hub.reconnects >= 1
    assert pid not in await listener_pids(factory.pool)


async def test_moderator_watches_a_user(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    server = await serve()
    url = str(server.make_url(SSE))
    mod = await factory.user(roles=["moderator"])
    user, owner = await factory.user(), await factory.user(roles=["owner"])
    bdr = await insert_bdr(factory.pool, user)
    await insert_bdr(factory.pool, mod)

    target = {"target_sqid": user.sqid}
    await assert_problem(await session.get(url, headers=user.auth, params={"target_sqid": mod.sqid}), 403)  # fmt: skip
    await assert_problem(await session.get(url, headers=mod.auth, params={"target_sqid": owner.sqid}), 403)  # fmt: skip
    await assert_problem(await session.get(url, headers=mod.auth, params={"target_sqid": "zzzzzz"}), 404)  # fmt: skip
    ticket = await mint_ticket(session, server, mod, **target)
    async with (
        open_stream(session, url, mod.auth, target) as by_header,
        open_stream(session, url, params={"ticket": ticket}) as by_ticket,
        open_stream(session, url, user.auth) as own,
    ):
        for stream in (by_header, by_ticket, own):
            snapshot = [m.json()["id"] for m in await stream.opening() if m.event == "bdr_update"]
            assert snapshot == [bdr]  # the user's, not the moderator's own
        await step(factory.pool, bdr)
        expected = (await event_ids(factory.pool, user))[-1:]
        for stream in (by_header, by_ticket, own):
            assert ids(await stream.updates(1)) == expected


def _awaited_chain(task: asyncio.Task[Any]) -> list[str]:
    """The coroutines a suspended task is parked in, outermost first."""
    names = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        names.append(coro.cr_code.co_qualname)
        coro = coro.cr_await
    return names


async def test_an_open_stream_keeps_no_middleware_or_handler_frame_alive(
    serve: Serve,
    session: aiohttp.ClientSession,
    factory: Factory,
    pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Tens of thousands of streams a process: each frame parked for a stream's life is paid
    # that many times over (the middlewares' and the handler's were ~1.5 KB a stream).
    server = await serve()
    user = await factory.user()
    bdr_id = await insert_bdr(pool, user)
    async with open_stream(session, str(server.make_url(SSE)), user.auth) as stream:
        await stream.opening()
        parked = [
            chain
            for task in asyncio.all_tasks()
            if (chain := _awaited_chain(task))[0] == "RequestHandler._handle_request"
        ]
        assert parked == [
            [
                "RequestHandler._handle_request",
                "RequestHandler.finish_response",
                "EventStream.write_eof",
                "Subscriber.wait",
            ]
        ]
        # ... and it still relays.
        await step(pool, bdr_id)
        [update] = await stream.updates(1, within=HUNG)
        assert update.json()["id"] == bdr_id
    hub = server.app[SSE_HUB]

    async def let_go() -> bool:
        return hub.subscriber_count == 0

    await eventually(let_go, 5, "the hub letting the closed stream go")
    # A client leaving is the common end of a stream (a storm is a site's worth at once):
    # counted by reason, not a log line each.
    assert hub.ended_by == {"gone": 1}
    metrics = await (await session.get(server.make_url("/metrics"))).text()
    assert 'pmd_sse_streams_ended_total{reason="gone"} 1.0' in metrics
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "went away" in r.message]


async def test_per_user_cap(serve: Serve, session: aiohttp.ClientSession, factory: Factory) -> None:
    server = await serve(sse_max_per_user=2)
    url = str(server.make_url(SSE))
    user, other = await factory.user(), await factory.user()
    async with open_stream(session, url, user.auth) as first:
        await first.opening()
        async with open_stream(session, url, user.auth) as second:
            await second.opening()
            body = await assert_problem(await session.get(url, headers=user.auth), 429)
            assert "limit is 2" in body["detail"]
            async with open_stream(session, url, other.auth) as theirs:  # per user
                await theirs.opening()

        # A closed stream frees its place (noticed within a second, no write needed).
        async def admitted() -> bool:
            resp = await session.get(url, headers=user.auth)
            resp.close()
            assert resp.status in (200, 429), resp.status
            return resp.status == 200

        await eventually(admitted, 5, "the closed stream freeing its place", interval=0.05)


async def test_a_reconnect_at_the_cap_is_not_refused_for_the_stream_it_replaces(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    # A reload, or every client of a network that dropped: the new stream arrives before the
    # once-a-second pass has seen the old one go, and must not get a 429 for it.
    server = await serve(sse_max_per_user=1)
    url = str(server.make_url(SSE))
    user = await factory.user()
    hub = server.app[SSE_HUB]
    async with (
        aiohttp.ClientSession() as first_client,
        open_stream(first_client, url, user.auth) as first,
    ):
        await first.opening()
        [old] = list(hub._subscribers())
    # The server has seen the connection close; the pass that frees its place has not run.

    async def closed() -> bool:
        return old.transport.is_closing()

    await eventually(closed, 5, "the server seeing the first stream's connection close")
    assert hub.subscriber_count == 1 and old.end is None
    async with open_stream(session, url, user.auth) as second:
        await second.opening()
        assert hub.subscriber_count == 1


async def test_openings_wait_their_turn_instead_of_a_503_and_leave_the_pool_to_others(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    # A reconnect storm: every opening's turn is taken (half the pool of 2: one), so another
    # opening waits, past the pool's acquire timeout, and is not answered 503; the pool keeps
    # serving other requests meanwhile.
    server = await serve(db_pool_max=2, db_acquire_timeout=0.2)
    user = await factory.user()
    url = str(server.make_url(SSE))
    async with server.app[SSE_OPENINGS]:
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
    async with server.app[SSE_OPENINGS]:  # the turn is busy: every lookup queues
        asked = [session.get(url, headers=u.auth) for u in [*users, banned, gone]]
        pending = [asyncio.ensure_future(a) for a in asked]
        await asyncio.sleep(0.3)
        assert not any(p.done() for p in pending)
    answers = await asyncio.wait_for(asyncio.gather(*pending), HUNG)
    try:
        for user, resp in zip(users, answers, strict=False):
            assert resp.status == 200, await resp.text()
            snapshot = await Stream(resp).opening()
            assert [m.json()["id"] for m in snapshot if m.event == "bdr_update"] == [mine[user.id]]
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
    async with server.app[SSE_OPENINGS]:  # the turn is busy: every lookup queues
        asked = [
            *(session.get(url, headers=m.auth, params={"target_sqid": u.sqid})
              for m, u in zip(mods[:6], users[:6], strict=True)),
            *(session.get(url, params={"ticket": t}) for t in by_ticket),
            session.get(url, headers=mods[0].auth, params={"target_sqid": "nosuchsqid"}),
            session.get(url, headers=plain.auth, params={"target_sqid": users[0].sqid}),
        ]  # fmt: skip
        pending = [asyncio.ensure_future(a) for a in asked]
        await asyncio.sleep(0.3)
        assert not any(p.done() for p in pending)
    answers = await asyncio.wait_for(asyncio.gather(*pending), HUNG)
    try:
        for user, resp in zip(users, answers, strict=False):
            assert resp.status == 200, await resp.text()
            snapshot = await Stream(resp).opening()
            assert [m.json()["id"] for m in snapshot if m.event == "bdr_update"] == [mine[user.id]]
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
    async with server.app[SSE_OPENINGS]:  # the turn is busy: every lookup queues
        pending = [asyncio.ensure_future(session.post(url, headers=u.auth)) for u in users]
        await asyncio.sleep(0.3)
        assert not any(p.done() for p in pending)
    answers = await asyncio.wait_for(asyncio.gather(*pending), HUNG)
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
    answers = await asyncio.wait_for(
        asyncio.gather(*[session.get(url, headers=u.auth) for u in users * 2]), HUNG
    )
    try:
        for resp in answers:
            assert resp.status == 200, await resp.text()
            await Stream(resp).opening()
    finally:
        for resp in answers:
            resp.close()


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
    async with server.app[SSE_OPENINGS]:  # the turn is busy: every lookup queues
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
    async with server.app[SSE_OPENINGS]:
        waiting = asyncio.ensure_future(session.get(server.make_url(SSE), headers=user.auth))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        server.app[SSE_HUB].close_all()
        await server.app[DB_POOL].close()  # as the app's cleanup does, after the streams end
    resp = await asyncio.wait_for(waiting, HUNG)
    body = await assert_problem(resp, 503)
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


async def test_a_slow_subscriber_is_closed_and_catches_up(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    server = await serve(sse_queue_size=4)
    url = str(server.make_url(SSE))
    user = await factory.user()
    bdrs = [await insert_bdr(factory.pool, user, artworks=2) for _ in range(20)]
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
    await assert_problem(await session.post(server.make_url(SSE + "-ticket"), headers=short.auth), 401)  # fmt: skip


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
    serve: Serve,
    aiohttp_client: AiohttpClient,
    session: aiohttp.ClientSession,
    factory: Factory,
    settings: Settings,
) -> None:
    server = await serve()
    client: Client = await aiohttp_client(server)
    user = await factory.user()
    posts = [await factory.post(user) for _ in range(4)]
    made = [await request_bdr(client, user, [p.id for p in posts[: i + 1]]) for i in range(3)]
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
            "SELECT max(id)::text FROM bdr_events WHERE user_id = $1", user.id
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
    checked: list[int] = []
    real_check = hub.access_check
    assert real_check is not None

    async def counting(pairs: Any) -> Any:
        checked.append(len(pairs))
        return await real_check(pairs)

    hub.access_check = counting
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
        for name, stream in (("demoted", demoted_s), ("on_promoted", on_promoted),
                             ("banned", banned_s), ("deactivated", deactivated_s)):  # fmt: skip
            rest = [m for m in await stream.ended(within=5) if m.comment is None]
            assert [m.event for m in rest] == ["access_revoked"], (name, rest)
            ends[name] = rest[0].json()
        assert ends["demoted"]["reason"] == "not_allowed" and ends["demoted"]["status"] == 403
        assert "Only moderators" in ends["demoted"]["detail"]
        assert ends["on_promoted"]["reason"] == "not_allowed"
        assert "moderator's posts" in ends["on_promoted"]["detail"]
        assert ends["banned"]["reason"] == "banned" and ends["banned"]["status"] == 403
        assert "banned until" in ends["banned"]["detail"]
        assert ends["deactivated"]["reason"] == "deactivated"
        assert ends["deactivated"]["status"] == 401
        # The streams that keep their access go on receiving the user's updates.
        await step(factory.pool, bdr)
        expected = (await event_ids(factory.pool, user))[-1:]
        for stream in (own, kept):
            assert ids(await stream.updates(1)) == expected
    assert hub.revoked == 4
    assert checked and max(checked) == 6  # every open stream's pair in one call
    await assert_problem(await session.get(url, headers=banned.auth), 403)

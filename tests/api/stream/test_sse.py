"""The SSE stream over real TCP: snapshot, live events, resume, isolation, tickets, the listener
killed or frozen, a moderator watching, the cap (openings under load: test_sse_openings.py; a
stream's life: test_sse_lifecycle.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.api import tickets
from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from pmd_service.sse import replay
from pmd_service.sse.endpoints import SSE_HUB
from support.seeding import Factory
from support.sse import SSE, open_stream
from support.stack import listener_pids
from tests.helpers import (
    HUNG,
    Serve,
    Served,
    assert_problem,
    event_ids,
    eventually,
    fetch_item,
    ids,
    insert_bdr,
    mint_ticket,
    request_bdr,
    run_worker,
    step,
)

Client = TestClient[Any, Any]


# --- tests ---------------------------------------------------------------------------------


async def test_snapshot_then_live_updates_as_the_worker_builds(
    served: Served, session: aiohttp.ClientSession, factory: Factory, settings: Settings
) -> None:
    server, client = served
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
    served: Served, session: aiohttp.ClientSession, factory: Factory, settings: Settings
) -> None:
    server, client = served
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
        await session.get(
            url,
            params={"ticket": await mint_ticket(session, server, alice), "target_sqid": bob.sqid},
        ),
        400,
    )
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

    # While disconnected: more of this user's events, and another user's, which the server has
    # read (its other tab has them) before the client resumes.
    other_bdr = await insert_bdr(factory.pool, other)
    async with open_stream(session, url, user.auth) as other_tab:
        await other_tab.opening()
        for _ in range(4):
            await step(factory.pool, bdr)
            await step(factory.pool, other_bdr)
        await other_tab.updates(4)
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
    await factory.pool.execute("DELETE FROM stream_events WHERE id <= $1", missed[0])
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
    it has read (no query), and must say exactly what `stream_events` would."""
    server = await serve()
    hub = server.app[SSE_HUB]
    user, other = await factory.user(), await factory.user()
    mine, theirs = await insert_bdr(factory.pool, user), await insert_bdr(factory.pool, other)
    for _ in range(3):
        await step(factory.pool, mine)
        await step(factory.pool, theirs)
    newest = await factory.pool.fetchval("SELECT max(id) FROM stream_events")

    async def read_all() -> bool:
        return bool(hub.recent.newest == newest)

    await eventually(read_all, HUNG, "the hub reading every event")
    own = await event_ids(factory.pool, user)
    everyone = await factory.pool.fetch("SELECT id FROM stream_events ORDER BY id")
    # After each event there is, the user's own and the other's: the same bytes both ways.
    for (after,) in everyone:
        memory = replay.resumed_from_memory(hub.kinds, hub.recent, user.id, after)
        table = await replay.opening(factory.pool, hub.kinds, user.id, after)
        assert memory is not None, after
        assert memory.body == table.body, after
        assert memory.watermark == newest  # every later event reaches the stream live
    assert replay.resumed_from_memory(hub.kinds, hub.recent, user.id, own[-1]) is not None

    # What the hub cannot vouch for goes to the table: never an event id, newer than it
    # has read, or older than what it holds (a server started after those events).
    for unknown in (0, -1, newest + 1000):
        assert replay.resumed_from_memory(hub.kinds, hub.recent, user.id, unknown) is None
    fresh = (await serve()).app[SSE_HUB]
    assert replay.resumed_from_memory(fresh.kinds, fresh.recent, user.id, own[0]) is None
    assert replay.resumed_from_memory(fresh.kinds, fresh.recent, user.id, None) is None


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

    async def let_go() -> bool:
        # The stopped backend ends once it runs again and reads that its client left.
        return pid not in await listener_pids(factory.pool)

    await eventually(let_go, 10, f"the silent listener's backend {pid} ending")


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
    await assert_problem(
        await session.get(url, headers=user.auth, params={"target_sqid": mod.sqid}), 403
    )
    await assert_problem(
        await session.get(url, headers=mod.auth, params={"target_sqid": owner.sqid}), 403
    )
    await assert_problem(
        await session.get(url, headers=mod.auth, params={"target_sqid": "zzzzzz"}), 404
    )
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


# A row as a later release's writer (beside this one in a rolling upgrade) may add it.
_LATER_ROW = """
INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
VALUES (gen_random_uuid(), $1::int, $2, $3, $4::jsonb)
"""


async def test_a_kind_or_audience_this_release_does_not_know_reaches_no_stream(
    serve: Serve, session: aiohttp.ClientSession, factory: Factory
) -> None:
    server = await serve()
    url = str(server.make_url(SSE))
    mod, user = await factory.user(roles=["moderator"]), await factory.user()
    bdr = await insert_bdr(factory.pool, user)
    before = await factory.pool.fetchval("SELECT max(id) FROM stream_events")
    async with (
        open_stream(session, url, user.auth) as own,
        open_stream(session, url, mod.auth, {"target_sqid": user.sqid}) as watching,
    ):
        for stream in (own, watching):
            await stream.opening()
        note = '{"kind": "note", "text": "a later kind"}'
        await factory.pool.execute(_LATER_ROW, user.id, "note", "watchers", note)
        hidden = '{"kind": "posts", "action": "hide", "post_ids": [1], "changed_count": 1}'
        await factory.pool.execute(_LATER_ROW, user.id, "posts", "moderators", hidden)
        await step(factory.pool, bdr)
        [expected] = await event_ids(factory.pool, user, before)
        for stream in (own, watching):
            got = await stream.until(lambda m: m.event == "bdr_update")
            assert [(m.event, m.id) for m in got] == [("bdr_update", str(expected))]
    # Resumed, from the hub's memory and from the table: the same.
    hub = server.app[SSE_HUB]
    for resumed in (
        replay.resumed_from_memory(hub.kinds, hub.recent, user.id, before),
        await replay.opening(factory.pool, hub.kinds, user.id, before),
    ):
        assert resumed is not None
        lines = resumed.body.split(b"\n")
        assert [x for x in lines if x.startswith((b"event: ", b"id: "))] == [
            b"event: bdr_update",
            b"id: %d" % expected,
            b"event: connected",
            b"id: %d" % expected,
        ]


def _awaited_chain(task: asyncio.Task[Any]) -> list[str]:
    """The coroutines a suspended task is parked in, outermost first."""
    names = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        names.append(coro.cr_code.co_qualname)
        coro = coro.cr_await
    return names


async def test_an_open_stream_keeps_no_task_alive(
    serve: Serve,
    session: aiohttp.ClientSession,
    factory: Factory,
    pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Tens of thousands of streams a process: each object kept for a stream's life is paid
    # that many times over.
    server = await serve()
    user = await factory.user()
    bdr_id = await insert_bdr(pool, user)
    async with open_stream(session, str(server.make_url(SSE)), user.auth) as stream:
        await stream.opening()
        kept = [
            chain
            for task in asyncio.all_tasks()
            if (chain := _awaited_chain(task)) and chain[0].startswith("RequestHandler.")
        ]
        assert kept == []
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
            body = await assert_problem(
                await session.get(url, headers=user.auth), 429, "too_many_streams"
            )
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
    # A reload: the new stream arrives as soon as the old one's connection closes, before the
    # once-a-second pass, and must not get a 429 for it.
    server = await serve(sse_max_per_user=1)
    url = str(server.make_url(SSE))
    user = await factory.user()
    hub = server.app[SSE_HUB]
    async with (
        aiohttp.ClientSession() as first_client,
        open_stream(first_client, url, user.auth) as first,
    ):
        await first.opening()
    async with open_stream(session, url, user.auth) as second:
        await second.opening()
        assert hub.subscriber_count == 1

"""Tickets spent many to a Redis round trip (pmd_service/api/ticket_redemptions.py), against a real
Redis: one pipeline for the spends of a loop turn, single use kept within a batch, and one
spend's error failing that spend only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from arq.connections import ArqRedis
from redis.exceptions import ResponseError

from pmd_service.api import tickets
from pmd_service.api.keys import TICKET_REDEMPTIONS
from pmd_service.api.ticket_redemptions import Redemptions
from pmd_service.core.redis_client import create_redis
from support.seeding import Factory
from support.sse import SSE
from tests.helpers import HUNG, Serve, assert_problem, eventually, mint_ticket

# Seconds Redis holds every write while a test lines spends up behind it: a guard, lifted as
# soon as the spends are waiting (CLIENT UNPAUSE).
PAUSE_MS = 30_000


@pytest.fixture
async def redis(redis_url: str, redis_clean: None) -> AsyncIterator[ArqRedis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


async def test_spends_of_one_loop_turn_go_in_one_round_trip_each_with_its_own_answer(
    redis: ArqRedis,
) -> None:
    keys = [f"pmd:test-ticket:{n}" for n in range(40)]
    for n, key in enumerate(keys):
        await redis.set(key, f"value {n}")
    redemptions = Redemptions(redis)
    answers = await asyncio.gather(*(redemptions.getdel(k) for k in [*keys, "pmd:test-none"]))
    assert answers == [f"value {n}".encode() for n in range(40)] + [None]
    assert redemptions.round_trips == 1
    assert redemptions.spent == 41
    assert not await redis.exists(*keys)  # spent means deleted
    await redemptions.stop()


async def test_a_ticket_spent_twice_in_one_batch_is_spent_once(redis: ArqRedis) -> None:
    await redis.set("pmd:test-ticket", "once")
    redemptions = Redemptions(redis)
    answers = await asyncio.gather(*(redemptions.getdel("pmd:test-ticket") for _ in range(5)))
    assert redemptions.round_trips == 1
    assert answers == [b"once", None, None, None, None]  # the first asked wins
    await redemptions.stop()


async def test_a_spend_redis_refuses_fails_alone(redis: ArqRedis) -> None:
    # A key of another type (a sorted set): GETDEL is refused (WRONGTYPE) for that command only.
    await redis.zadd("pmd:test-list", {"x": 1})
    await redis.set("pmd:test-a", "a")
    await redis.set("pmd:test-b", "b")
    redemptions = Redemptions(redis)
    answers = await asyncio.gather(
        redemptions.getdel("pmd:test-a"),
        redemptions.getdel("pmd:test-list"),
        redemptions.getdel("pmd:test-b"),
        return_exceptions=True,
    )
    assert answers[0] == b"a" and answers[2] == b"b"
    assert isinstance(answers[1], ResponseError) and "WRONGTYPE" in str(answers[1])
    assert redemptions.round_trips == 1
    await redemptions.stop()


async def test_spends_waiting_at_shutdown_are_cancelled_and_leave_no_task(
    redis: ArqRedis, redis_url: str
) -> None:
    await redis.set("pmd:test-ticket", "x")
    redemptions = Redemptions(redis)
    pauser = create_redis(redis_url)
    try:
        await pauser.client_pause(PAUSE_MS, all=False)  # writes only
        waiting = [asyncio.ensure_future(redemptions.getdel("pmd:test-ticket")) for _ in range(3)]
        await asyncio.sleep(0.05)
        await redemptions.stop()
    finally:
        await pauser.client_unpause()
        await pauser.aclose()
    for spend in waiting:
        with pytest.raises(asyncio.CancelledError):
            await spend
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "ticket-redemptions"]
    # After the stop a spend still works, alone.
    assert await redemptions.getdel("pmd:test-ticket") in (b"x", None)


async def test_stream_openings_with_tickets_share_round_trips_and_a_broken_one_fails_alone(
    serve: Serve,
    session: aiohttp.ClientSession,
    factory: Factory,
    redis: ArqRedis,
    redis_url: str,
) -> None:
    # A reconnect storm of browsers: every EventSource spends its ticket. Redis holds the
    # writes until all are asked, then they go out in at most three round trips (up to two
    # pipelines out while the rest gather). One ticket's key broken in Redis: only its
    # opening fails (503, as when Redis refuses), the others open.
    server = await serve()
    url = str(server.make_url(SSE))
    users = [await factory.user() for _ in range(20)]
    issued = [await mint_ticket(session, server, u) for u in users]
    broken = issued[7]
    await redis.delete(tickets.redis_key(broken))
    await redis.zadd(tickets.redis_key(broken), {"not a ticket": 1})
    redemptions = server.app[TICKET_REDEMPTIONS]
    before = redemptions.round_trips
    pauser = create_redis(redis_url)
    pending: list[asyncio.Future[Any]] = []
    try:
        await pauser.client_pause(PAUSE_MS, all=False)  # writes only
        pending = [asyncio.ensure_future(session.get(url, params={"ticket": t})) for t in issued]

        async def all_asked() -> bool:
            return redemptions.asked == len(issued)

        await eventually(all_asked, HUNG, "every opening asking to spend its ticket")
    finally:
        await pauser.client_unpause()
        await pauser.aclose()
    answers = await asyncio.wait_for(asyncio.gather(*pending), HUNG)
    try:
        statuses = [r.status for r in answers]
        assert statuses == [200] * 7 + [503] + [200] * 12, statuses
        await assert_problem(answers[7], 503)
    finally:
        for resp in answers:
            resp.close()
    assert 1 <= redemptions.round_trips - before <= 3, redemptions.round_trips - before
    # Each spent once: a second use of any is refused.
    again = await session.get(url, params={"ticket": issued[0]})
    await assert_problem(again, 401)

"""The host's cached feeds, dropped after the reply by one background task per server process
(posts/host_cache.py), in a redis-server of the test's own standing for the host's cache:
undo drops them too, a burst of actions coalesces into at most two passes, a pass over its
budget carries on until done, a cache that is down is retried, a pass owed at shutdown runs,
and one SCAN for several patterns drops exactly what Redis's own MATCH finds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis

from pmd_service.core.settings import DEFAULT_HOST_CACHE_PATTERNS, Settings
from pmd_service.features.posts.endpoints import FEED_DROPS
from pmd_service.features.posts.host_cache import FeedDrops, create_host_cache
from pmd_service.web.app import create_app
from support.redis import RedisServer
from support.seeding import Factory
from tests.helpers import act, eventually

Client = TestClient[Any, Any]
FEEDS = {"feed:recent:first:20": "x", "feed:promoted:first:20": "x", "hashtags:top:trending": "x"}
KEPT = {"user:42:profile": "kept", "feedback:1": "kept"}


@pytest.fixture
def host_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "host-redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def cache(host_redis: RedisServer) -> AsyncIterator[Redis]:
    cache = create_host_cache(host_redis.url)
    yield cache
    await cache.aclose()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings, host_redis: RedisServer, pool: Any
) -> Client:
    return await aiohttp_client(create_app(replace(settings, host_cache_redis_url=host_redis.url)))


def drops_of(client: Client) -> FeedDrops:
    drops: FeedDrops | None = client.app[FEED_DROPS]
    assert drops is not None
    return drops


async def left(cache: Redis) -> list[str]:
    return sorted(k.decode() for k in await cache.keys("*"))


async def settled(drops: FeedDrops) -> None:
    async def idle() -> bool:
        return drops.idle

    await eventually(idle, what="the host cache's passes done")


async def only_kept(cache: Redis) -> None:
    async def check() -> bool:
        return await left(cache) == sorted(KEPT)

    await eventually(check, what=lambda: "feeds left in the host's cache")


async def test_an_undo_drops_the_hosts_cached_feeds(
    client: Client, factory: Factory, cache: Redis
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    resp = await act(client, user, "hide", ids)
    assert resp.status == 200, await resp.text()
    undo = (await resp.json())["undo"]
    await settled(drops_of(client))  # the hide's own pass is over
    await cache.mset({**FEEDS, **KEPT})
    resp = await client.post(undo, headers=user.auth)
    assert resp.status == 200, await resp.text()
    await only_kept(cache)


async def test_a_burst_of_actions_makes_at_most_two_passes(
    client: Client, factory: Factory, cache: Redis
) -> None:
    user, ids = await factory.owner_and_bulk(10)
    drops = drops_of(client)
    await cache.mset({**FEEDS, **KEPT})
    # Writes wait while the cache is paused, so the first pass cannot end during the burst.
    await cache.client_pause(60_000, all=False)
    try:
        for post in ids:
            resp = await act(client, user, "hide", [post])
            assert resp.status == 200, await resp.text()
    finally:
        await cache.client_unpause()
    await only_kept(cache)
    await settled(drops)
    # The pass under way when the burst began, and one after it for the requests it may miss.
    assert drops.passes in (1, 2), drops.passes
    metrics = await (await client.get("/metrics")).text()
    assert f"pmd_host_cache_passes_total {float(drops.passes)}" in metrics


async def test_a_pass_over_its_budget_carries_on_until_done(cache: Redis) -> None:
    async with cache.pipeline(transaction=False) as pipe:
        for n in range(30_000):
            pipe.set(f"session:{n}", "x")
        for n in range(2_500):
            pipe.set(f"feed:recent:{n}:20", "x")
        await pipe.execute()
    await cache.mset({**FEEDS, **KEPT})
    # No budget at all: each slice is one SCAN step, then a pause.
    drops = FeedDrops(cache, DEFAULT_HOST_CACHE_PATTERNS, budget=0, retry=0.01)
    drops.start()
    try:
        drops.request()
        await settled(drops)
    finally:
        await drops.stop()
    assert (drops.passes, drops.dropped) == (1, 2_500 + len(FEEDS))
    assert drops.stops >= 2
    assert await cache.dbsize() == 30_000 + len(KEPT)


async def test_a_cache_that_is_down_never_fails_an_action_and_is_retried(
    client: Client,
    factory: Factory,
    host_redis: RedisServer,
    cache: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    drops = drops_of(client)
    host_redis.stop()
    resp = await act(client, user, "hide", ids)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["changed_count"] == 2

    async def stopped() -> bool:
        return drops.stops >= 1

    await eventually(stopped, what="a failed pass")
    assert "could not drop the host's cached feeds" in caplog.text
    host_redis.start()  # the same port, as a restarted cache comes back
    await cache.mset({**FEEDS, **KEPT})
    await only_kept(cache)


async def test_a_pass_owed_at_shutdown_runs(cache: Redis) -> None:
    await cache.mset({**FEEDS, **KEPT})
    drops = FeedDrops(cache, DEFAULT_HOST_CACHE_PATTERNS)
    drops.start()
    drops.request()
    await drops.stop()  # before the task had a turn
    assert await left(cache) == sorted(KEPT)


@pytest.mark.parametrize(
    "patterns",
    [
        ("feed:recent:*", "feed:promoted:*", "hashtags:*"),
        ("feed:*",),
        ("a?c", "[^x]yz*", "q\\*r", "h[a-c]t*", "*:tail"),
        ("x[0-9]", "y*"),
    ],
)
async def test_one_scan_drops_what_redis_matches(cache: Redis, patterns: tuple[str, ...]) -> None:
    keys = [
        "feed:recent:1",
        "feed:promoted:2",
        "feed:other",
        "hashtags:x",
        "hashtag",
        "abc",
        "axc",
        "abcd",
        "ayz",
        "xyz",
        "ayzzz",
        "q*r",
        "qxr",
        "hat",
        "hbtx",
        "hdt",
        "a:tail",
        "x5",
        "xa",
        "y",
        "zz",
        "feed:",
        "\u00e9:tail",
        "h-t",
    ]
    await cache.mset(dict.fromkeys(keys, "x"))
    matched: set[str] = set()
    for pattern in patterns:
        matched |= {k.decode() async for k in cache.scan_iter(match=pattern)}
    drops = FeedDrops(cache, patterns)
    drops.request()
    await drops.stop()
    assert await left(cache) == sorted(set(keys) - matched)
    assert drops.dropped == len(matched)

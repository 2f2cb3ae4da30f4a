"""Benchmark of a one-post action beside a big host cache: `python -m bench.host_cache`."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench import cli
from bench.posts import SQL_OWNED, ms, pair, seed_listers, served
from pmd_service.api.keys import DB_POOL
from pmd_service.core.settings import DEFAULT_HOST_CACHE_PATTERNS, Settings
from pmd_service.features.posts.endpoints import FEED_DROPS
from pmd_service.features.posts.host_cache import FeedDrops, create_host_cache
from pmd_service.web.app import create_app
from support.redis import RedisServer
from support.stack import eventually

FEEDS, TARGET = 3_000, 2.0
OTHERS = ("session:",) * 4 + ("user:",) * 3 + ("rate:notif:",) * 2 + ("feedback:",)


async def refeed(cache: Redis) -> None:
    prefixes = ("feed:recent:", "feed:promoted:", "hashtags:posts:")
    await cache.mset({f"{prefixes[n % 3]}{n}:20": "x" for n in range(FEEDS)})


async def fill(cache: Redis, keys: int) -> None:
    names = [f"{OTHERS[n % len(OTHERS)]}{n}" for n in range(keys - FEEDS)]
    for start in range(0, len(names), 100_000):
        async with cache.pipeline(transaction=False) as pipe:
            for at in range(start, min(start + 100_000, len(names)), 1_000):
                pipe.mset(dict.fromkeys(names[at : at + 1_000], "x"))
            await pipe.execute()
    await refeed(cache)


async def settle(drops: FeedDrops) -> None:
    done = "the host cache's passes done"
    await eventually(lambda: asyncio.sleep(0, drops.idle), 300, done, interval=0.005)


async def one_pass(cache: Redis, keys: int) -> float:
    await refeed(cache)
    drops = FeedDrops(cache, DEFAULT_HOST_CACHE_PATTERNS)
    drops.start()
    started = time.perf_counter()
    drops.request()
    await settle(drops)
    took = time.perf_counter() - started
    await drops.stop()
    assert (drops.dropped, await cache.dbsize()) == (FEEDS, keys - FEEDS)
    return took


async def bench(settings: Settings, url: str, keys: int, rounds: int, block: int) -> Any:
    cache = create_host_cache(url)
    await fill(cache, keys)
    user = (await seed_listers(settings, {"artist": (1_000, True)}))["artist"]
    # The pace of actions is not what this measures: its 200 actions come within seconds.
    roomy = cli.roomy(settings, bulk_actions_per_minute=100_000)
    app = create_app(cli.replace(roomy, host_cache_redis_url=url))
    times: dict[str, list[float]] = {"full": [], "empty": []}
    async with served(settings, app) as http:
        drops = app[FEED_DROPS]
        assert drops is not None
        post = await app[DB_POOL].fetchval(SQL_OWNED, user.id)
        actions = [{"action": a, "post_ids": [post]} for a in ("unhide", "hide")]

        async def act() -> None:
            actions.reverse()  # hide, unhide, hide…
            async with http.post("/api/pmd/action", json=actions[0], headers=user.auth) as r:
                assert r.status == 200 and (await r.json())["changed_count"] == 1

        for _ in range(6):  # warm-up
            await act()
        await settle(drops)
        passes = drops.passes
        for n in range(2 * rounds):
            which = ("full", "empty")[n % 2]  # db 0's cache
            if which == "full":
                await refeed(cache)
            times[which] += [await ms(act()) for _ in range(block)]
            await settle(drops)
            await cache.swapdb(0, 1)
        passes = drops.passes - passes
    passed = [await one_pass(cache, keys) for _ in range(3)]
    await cache.aclose()
    figures = {
        "cache_keys": keys,
        "feeds": FEEDS,
        "rounds": rounds,
        "block": block,
        "full": pair(times["full"]),
        "empty": pair(times["empty"]),
        "ratio": statistics.median(times["full"]) / statistics.median(times["empty"]),
        "target": TARGET,
        "actions": 2 * rounds * block,
        "passes": passes,
        "pass_s": statistics.median(passed),
    }
    cli.show(f"a one-post action, {keys:,} keys in the host's cache against none", figures)
    return figures


if __name__ == "__main__":
    parser = cli.parser("host_cache", __doc__)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys in the host's cache")
    parser.add_argument("--rounds", type=int, default=10, help="blocks with each cache")
    parser.add_argument("--block", type=int, default=10, help="actions back to back in a block")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pmd-bench-host-cache-") as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            keys = max(args.keys, FEEDS)
            cli.save(args.json, cli.in_stack(bench, server.url, keys, args.rounds, args.block))
        finally:
            server.stop()

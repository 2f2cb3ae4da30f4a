"""The backlog drain of bench.scaling (worker processes here) and bench.capacity (worker hosts):
small BDRs POSTed while no worker runs and held aside (a Redis RENAME) until `n` fresh workers
are up, so the figure is the drain and not their start-up; with the CPU every party spent."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from arq.connections import ArqRedis
from arq.constants import default_queue_name

from support.measures import machine_seconds

T = TypeVar("T")
ARTWORKS_PER_BDR = 4
HELD_QUEUE = "pmd-bench:held-queue"
# Of the BDRs $1: how many are ready, and how many ended otherwise.
SQL_DRAINED = """
SELECT count(*) FILTER (WHERE status = 'ready') AS ready,
       count(*) FILTER (WHERE status NOT IN ('pending', 'processing', 'ready')) AS other
FROM batch_download_requests WHERE id = ANY($1::uuid[])
"""
SQL_DRAIN_TIMES = """
SELECT extract(epoch FROM max(completed_at))::float8 AS last_done,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at))
           AS claim_ready_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - started_at))
           AS claim_ready_p90
FROM batch_download_requests WHERE id = ANY($1::uuid[])
"""


async def until(ready: Callable[[], Any], within: float, what: str) -> None:
    """Polls `ready()` (awaited when it gives an awaitable) until it is true."""
    deadline = time.monotonic() + within
    while not (await got if inspect.isawaitable(got := ready()) else got):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(0.05)


def window(posts: list[int], n: int) -> list[int]:
    """The n-th request's artworks: a different window of the user's posts each time."""
    return [posts[(n + k) % len(posts)] for k in range(ARTWORKS_PER_BDR)]


async def post_bdr(http: aiohttp.ClientSession, base: str, auth: dict[str, str],
                   post_ids: list[int]) -> str:  # fmt: skip
    async with http.post(f"{base}/api/pmd/bdr", json={"post_ids": post_ids}, headers=auth) as r:
        assert r.status == 202, (r.status, await r.text())
        bdr_id: str = (await r.json())["id"]
        return bdr_id


async def commands(redis: ArqRedis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    # INFO itself is counted too: left out.
    return {k: b[k] - a.get(k, 0) for k in b if b[k] - a.get(k, 0) and k != "info"}


@dataclass
class Rig(ABC):
    """What a drain runs against: the service at `base` (empty when `http` has a base URL), its
    users (auth header, their posts), the database (a connection or pool) and Redis. Each
    benchmark's rig runs `n` fresh workers and says what CPU each party has spent."""

    http: aiohttp.ClientSession
    base: str
    users: list[tuple[dict[str, str], list[int]]]
    db: Any
    redis: ArqRedis

    @abstractmethod
    def workers(self, n: int) -> AbstractAsyncContextManager[None]:
        """`n` fresh workers up and polling for the `async with` block."""

    @abstractmethod
    async def parties(self) -> dict[str, dict[Any, float]]:
        """Party → {each of its processes (or another counter) → CPU seconds spent so far}."""

    async def metered(self, work: Awaitable[T]) -> tuple[T, dict[str, float]]:
        """`work`'s result, and the CPU seconds each party, this process ("client") and the
        machine spent meanwhile; "others": the rest of the machine's busy time."""

        async def sample() -> tuple[dict[str, dict[Any, float]], dict[str, float]]:
            busy, iowait = machine_seconds()
            own = {"client": sum(os.times()[:2]), "machine": busy, "iowait": iowait}
            return await self.parties(), own | {"wall": time.monotonic()}

        parties, own = await sample()
        result = await work
        parties_after, own_after = await sample()
        # A process that started meanwhile started at 0 CPU.
        spent = {party: sum(cpu - parties.get(party, {}).get(key, 0.0) for key, cpu in now.items())
                 for party, now in parties_after.items()}  # fmt: skip
        spent |= {k: v - own[k] for k, v in own_after.items()}
        ours = sum(v for k, v in spent.items() if k not in ("machine", "iowait", "wall"))
        spent["others"] = max(0.0, spent["machine"] - ours)
        spent["box_busy"] = spent["machine"] / (spent["wall"] * len(os.sched_getaffinity(0)))
        return result, {k: round(v, 3) for k, v in spent.items()}


async def drain(
    rig: Rig, backlog: int, n_workers: int, limit: float, idle_s: float = 0.0
) -> dict[str, Any]:
    """`backlog` BDRs POSTed (spread evenly over the users), held, then drained by `n_workers`
    fresh workers: seconds from the release to the last ready (the database's clock), claim →
    ready, CPU, and the Redis commands of the POSTs, the drain and (`idle_s`) idle workers."""
    before = await commands(rig.redis)
    share = -(-backlog // len(rig.users))

    async def post(user: tuple[dict[str, str], list[int]], k: int) -> list[str]:
        return [await post_bdr(rig.http, rig.base, user[0], window(user[1], r)) for r in range(k)]

    async def queued() -> bool:
        return bool(await rig.redis.zcard(default_queue_name) >= backlog)

    async def ready() -> bool:
        row = await rig.db.fetchrow(SQL_DRAINED, ids)
        assert row["other"] == 0, "a BDR failed or was cancelled"
        return bool(row["ready"] == len(ids))

    async def released() -> None:
        await rig.redis.rename(HELD_QUEUE, default_queue_name)
        await until(ready, limit, "the drain")

    posted = await asyncio.gather(*(post(u, min(share, backlog - i * share))
                                    for i, u in enumerate(rig.users)))  # fmt: skip
    ids = [i for mine in posted for i in mine]
    # Each is enqueued after its reply is written: held once every one is in the queue.
    await until(queued, 30, f"{backlog} BDRs enqueued")
    await rig.redis.rename(default_queue_name, HELD_QUEUE)
    used = {"post": delta(before, await commands(rig.redis))}
    async with rig.workers(n_workers):
        before = await commands(rig.redis)
        start = await rig.db.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        _, cpu = await rig.metered(released())
        used["drain"] = delta(before, after := await commands(rig.redis))
        if idle_s:
            await asyncio.sleep(idle_s)
            used["idle"] = delta(after, await commands(rig.redis))
    times = await rig.db.fetchrow(SQL_DRAIN_TIMES, ids)
    seconds = times["last_done"] - start
    return {"workers": n_workers, "bdrs": backlog, "seconds": round(seconds, 3),
            "per_s": round(backlog / seconds, 2),
            "claim_ready_p50_ms": times["claim_ready_p50"] * 1000,
            "claim_ready_p90_ms": times["claim_ready_p90"] * 1000,
            "cpu": cpu, "redis_commands": used}  # fmt: skip

"""The SSE stream served by real `python server.py` processes: two replicas sharing one database,
and SIGTERM with thousands of streams open."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from pmd_service.core.redis_client import create_redis
from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from support.sse import SSE, Stream
from support.stack import free_port, listener_pids, service_env, start_server
from tests.helpers import (
    announced_in,
    event_ids,
    ids,
    run_worker,
)

STREAMS_AT_SHUTDOWN = 2000
# Seconds after which a wait that should end counts as hung: a guard, not a performance claim.
HUNG = 30.0


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def url(self, path: str) -> str:
        return self.base + path


@contextlib.asynccontextmanager
async def server_process(
    settings: Settings, directory: Path, name: str, **env: str
) -> AsyncIterator[ServerProcess]:
    port = free_port()
    log = directory / f"{name}.log"
    with log.open("wb") as out:
        proc = await asyncio.to_thread(
            start_server, service_env(settings, directory, **env), port, out
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait, 10)


async def connect(http: aiohttp.ClientSession, url: str, **kw: object) -> Stream:
    resp = await http.get(url, **kw)  # type: ignore[arg-type]
    assert resp.status == 200, await resp.text()
    stream = Stream(resp)
    await stream.opening()
    return stream


async def test_two_server_processes_both_deliver_what_a_worker_commits(
    factory: Factory, settings: Settings, tmp_path: Path, redis_clean: None
) -> None:
    owner, posts = await factory.owner_and_posts(3)
    async with (
        server_process(settings, tmp_path, "a") as a,
        server_process(settings, tmp_path, "b") as b,
        aiohttp.ClientSession() as http,
    ):
        # Each process holds exactly one LISTEN connection.
        assert len(await listener_pids(factory.pool)) == 2
        # A ticket minted on one replica is redeemed on the other (they share Redis).
        async with http.post(a.url(SSE + "-ticket"), headers=owner.auth) as resp:
            ticket = (await resp.json())["ticket"]
        on_a = await connect(http, a.url(SSE), headers=owner.auth)
        on_b = await connect(http, b.url(SSE), params={"ticket": ticket})
        watermark = max([0, *await event_ids(factory.pool, owner)])

        async with http.post(
            a.url("/api/pmd/bdr"), json={"post_ids": [p.id for p in posts]}, headers=owner.auth
        ) as resp:
            assert resp.status == 202
            bdr_id = (await resp.json())["id"]
        redis = create_redis(settings.redis_url or "")
        try:
            await announced_in(factory.pool, redis, bdr_id)
        finally:
            await redis.aclose()
        await run_worker(settings)  # the worker commits processing, progress and ready

        expected = await event_ids(factory.pool, owner, after=watermark)
        assert len(expected) >= 3
        for stream in (on_a, on_b):
            got = await stream.updates(len(expected))
            assert ids(got) == expected
            assert got[0].json()["status"] == "pending"
            assert got[-1].json()["id"] == bdr_id and got[-1].json()["status"] == "ready"
            stream.close()


async def test_sigterm_closes_thousands_of_streams_and_exits(
    factory: Factory, settings: Settings, pool: asyncpg.Pool, tmp_path: Path, redis_clean: None
) -> None:
    per_user = 500
    users: list[UserRow] = [await factory.user() for _ in range(STREAMS_AT_SHUTDOWN // per_user)]
    async with (
        server_process(settings, tmp_path, "s", SSE_MAX_PER_USER=str(per_user)) as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        gate = asyncio.Semaphore(100)

        async def one(user: UserRow) -> Stream:
            async with gate:
                return await connect(http, server.url(SSE), headers=user.auth)

        streams = await asyncio.gather(*(one(u) for u in users for _ in range(per_user)))
        assert len(streams) == STREAMS_AT_SHUTDOWN

        server.proc.send_signal(signal.SIGTERM)
        # How long the exit takes is a one-off figure in docs/benchmarks.md; HUNG only turns a
        # server that never exits into a failure.
        try:
            code = await asyncio.to_thread(server.proc.wait, HUNG)
        except subprocess.TimeoutExpired:
            pytest.fail(f"hung: still running {HUNG:.0f} s after SIGTERM")
        assert code == 0, server.log.read_text()
        # Every stream ended (told to reconnect, or by the socket closing), none left hanging,
        # with no other event but the keep-alive pings sent while the 2,000 were connecting.
        leftovers = await asyncio.gather(*(s.ended(within=HUNG) for s in streams))
        rests = [[m for m in rest if m.comment != "ping"] for rest in leftovers]
        assert all(rest == [] or [m.event for m in rest] == [None, "reconnect"] for rest in rests)
        assert any(rests)
        for s in streams:
            s.close()
    assert await listener_pids(pool) == []

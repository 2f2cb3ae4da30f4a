"""A worker whose Redis connection drops while it claims a job carries on (arq's claim reads
under WATCH; redis-py makes a lost connection there a WatchError, which ended arq's worker)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace

from pmd_service.core.redis_client import redis_settings
from pmd_service.core.settings import Settings
from support.seeding import Factory
from support.stack import free_port
from tests.helpers import fetch_item, request_bdr, run_worker

Client = TestClient[Any, Any]


@dataclass
class CuttingProxy:
    """A TCP proxy in front of the real Redis that, once, drops a connection right after
    Redis has answered its WATCH: the client's next command then meets a closed socket."""

    upstream: str
    port: int = field(default_factory=free_port)
    cuts: int = 0
    _armed: bool = True
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        url = urlsplit(self.upstream)
        if url.scheme == "unix":
            return await asyncio.open_unix_connection(url.path)
        return await asyncio.open_connection(url.hostname, url.port or 6379)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open_upstream()
        watched = asyncio.Event()

        async def to_redis() -> None:
            while data := await reader.read(65536):
                if self._armed and b"WATCH" in data.upper():
                    self._armed = False
                    watched.set()
                up_writer.write(data)
                await up_writer.drain()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
                if watched.is_set():  # the WATCH's answer is out: now the connection goes
                    self.cuts += 1
                    return

        pumps = [asyncio.create_task(to_redis()), asyncio.create_task(to_client())]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()

    def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@pytest.fixture
async def cutting_proxy(redis_url: str) -> AsyncIterator[CuttingProxy]:
    proxy = CuttingProxy(redis_url)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", proxy.port)
    yield proxy
    server.close()
    for task in list(proxy._tasks):
        task.cancel()
    await server.wait_closed()


async def test_a_connection_lost_while_claiming_a_job_does_not_end_the_worker(
    client: Client, factory: Factory, settings: Settings, cutting_proxy: CuttingProxy
) -> None:
    owner = await factory.user("watched")
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id])
    db = redis_settings(settings.redis_url).database
    through_proxy = replace(settings, redis_url=f"redis://127.0.0.1:{cutting_proxy.port}/{db}")

    await asyncio.wait_for(run_worker(through_proxy), 120)  # a hang guard, not a timing claim

    assert cutting_proxy.cuts == 1  # the claim's connection was dropped after its WATCH
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"

"""`Server: pmd-service` on every answer, never the Python and aiohttp versions: JSON, problems,
the page and its static files, SSE, and what aiohttp answers by itself to a request it cannot
parse (in the real server process)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from pmd_service.core.settings import Settings
from support.seeding import Factory
from support.sse import SSE, Stream
from support.stack import free_port, service_env
from tests.procs import SERVE, Proc

Client = TestClient[Any, Any]


async def test_every_answer_of_the_app_names_only_the_service(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    answers = {
        "json": await client.get("/api/pmd/posts", headers=user.auth),
        "401 problem": await client.get("/api/pmd/posts"),
        "404 problem": await client.get("/nowhere"),
        "400 problem": await client.get("/api/pmd/posts?limit=0", headers=user.auth),
        "page": await client.get(f"/u/{user.sqid}/posts"),
        "static file": await client.get("/static/pmd/app.js"),
        "health": await client.get("/healthz"),
    }
    assert [a.status for a in answers.values()] == [200, 401, 404, 400, 200, 200, 200]
    stream = await client.get(SSE, headers=user.auth)
    try:
        await Stream(stream).opening()
        answers["sse"] = stream
    finally:
        stream.close()
    for what, resp in answers.items():
        assert resp.headers.getall("Server") == ["pmd-service"], what


async def test_the_server_process_names_only_the_service_even_to_a_request_it_cannot_parse(
    settings: Settings, tmp_path: Path, redis_clean: None
) -> None:
    port = free_port()
    server = await Proc.start(SERVE, service_env(settings, tmp_path, PORT=str(port)), "server")
    try:
        await server.line(lambda s: "listening on" in s)
        for request in (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            head = (await reader.read(4096)).decode("latin-1")
            writer.close()
            status = head.split(" ", 2)[1]
            assert status in ("200", "400"), head
            assert "\r\nServer: pmd-service\r\n" in head, head
            assert "Python" not in head and "aiohttp" not in head
        assert await server.stop() == 0
    finally:
        await server.kill()

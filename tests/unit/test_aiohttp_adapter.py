"""What pmd_service/api/aiohttp_adapter.py relies on in aiohttp, checked against the aiohttp
installed, over a real socket: each test fails the day aiohttp changes it."""

from __future__ import annotations

import asyncio
from importlib.metadata import version

from aiohttp import web, web_response
from aiohttp.test_utils import TestServer

from pmd_service.api.aiohttp_adapter import (
    AIOHTTP_VERSION,
    Detached,
    DirectSocket,
    detach,
    name_the_server,
)
from pmd_service.sse import frames

seen: dict[str, bool | None] = {}


async def _mixed(request: web.Request) -> web.StreamResponse:
    """Direct chunks on the socket between aiohttp's own writes, as the SSE hub makes them."""
    response = web.StreamResponse()
    if request.query.get("compress"):
        response.enable_compression()
    assert request.transport is not None
    socket = DirectSocket(request.transport)
    await response.prepare(request)
    socket.take_over(response)
    seen["framing"] = framing = socket.chunked
    if framing is not None:
        socket.write(frames.chunk(b"a") if framing else b"a")
    await response.write(b"b")
    if framing is not None:
        socket.write(frames.chunk(b"c") if framing else b"c")
    await response.write_eof()
    return response


async def _raw(server: TestServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(), 10)  # the server closes: HTTP/1.0, Connection
    writer.close()
    return data


def test_the_installed_aiohttp_is_the_one_the_adapter_was_read_from() -> None:
    assert version("aiohttp") == AIOHTTP_VERSION, "re-read api/aiohttp_adapter.py against it"


async def test_direct_chunks_interleave_with_aiohttps_own_and_its_end_of_body() -> None:
    app = web.Application()
    app.router.add_get("/", _mixed)
    server = TestServer(app)
    await server.start_server()
    try:
        got = await _raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, body = got.split(b"\r\n\r\n", 1)
        assert seen["framing"] is True
        assert b"Transfer-Encoding: chunked" in head
        assert body == frames.chunk(b"a") + frames.chunk(b"b") + frames.chunk(b"c") + b"0\r\n\r\n"

        got = await _raw(server, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        assert seen["framing"] is False
        assert got.split(b"\r\n\r\n", 1)[1] == b"abc"

        got = await _raw(
            server,
            b"GET /?compress=1 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: deflate\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert seen["framing"] is None  # compressed: the hub leaves the writing to aiohttp
    finally:
        await server.close()


async def test_answers_aiohttp_writes_itself_name_the_server_as_told() -> None:
    before = web_response.SERVER_SOFTWARE  # type: ignore[attr-defined]
    name_the_server("pmd-service-test")
    server = TestServer(web.Application())
    await server.start_server()
    try:
        got = await _raw(server, b"NOT HTTP AT ALL\r\n\r\n")
        assert got.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), got
        assert b"Server: pmd-service-test\r\n" in got, got
    finally:
        await server.close()
        name_the_server(before)


class _Taker(asyncio.Protocol):
    """What a detached connection's new owner sees of it."""

    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


async def test_a_detached_connection_stays_open_for_its_new_owner_alone() -> None:
    taken: list[tuple[DirectSocket, _Taker]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = Detached()
        assert request.transport is not None
        socket = DirectSocket(request.transport)
        await response.prepare(request)
        await response.write(b"a")
        socket.take_over(response)
        taker = _Taker()
        assert detach(request, taker)
        taken.append((socket, taker))
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"Transfer-Encoding: chunked" in head
        assert await asyncio.wait_for(reader.readexactly(6), 10) == frames.chunk(b"a")
        [(socket, taker)] = taken
        # aiohttp let go of it: no connection of its own, no task for it, nothing closed.
        assert server.handler is not None and server.handler.connections == []
        await asyncio.sleep(0.05)
        assert not [t for t in asyncio.all_tasks() if "RequestHandler" in repr(t.get_coro())]
        assert not socket.is_closing()
        socket.write(frames.chunk(b"b") + b"0\r\n\r\n")
        socket.close()
        assert await asyncio.wait_for(reader.read(), 10) == frames.chunk(b"b") + b"0\r\n\r\n"
        assert await asyncio.wait_for(taker.lost, 10) is None
        writer.close()
    finally:
        await server.close()

"""The baseline of `bench.sse`: a bare aiohttp app served as `server.py` serves it."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from multiprocessing.process import BaseProcess

from aiohttp import web

from pmd_service.web.connections import raise_descriptor_limit
from pmd_service.web.serve import KEEPALIVE_SECONDS, LISTEN_BACKLOG
from support import stack

BODY = b"retry: 3000\n\nevent: connected\ndata: {}\n\n"
HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
TICKET = b'{"ticket":"baseline","expires_in":30}'


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers=HEADERS)
    await response.prepare(request)
    await response.write(BODY)
    await asyncio.Event().wait()  # held until the client leaves (the handler is cancelled)
    return response


async def _ticket(request: web.Request) -> web.Response:
    return web.Response(body=TICKET, content_type="application/json")


def _main(port: int) -> None:
    raise_descriptor_limit()
    app = web.Application()
    app.router.add_get("/api/pmd/bdr/sse", _stream)
    app.router.add_post("/api/pmd/bdr/sse-ticket", _ticket)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        reuse_port=True,
        backlog=LISTEN_BACKLOG,
        keepalive_timeout=KEEPALIVE_SECONDS,
        access_log=None,
        handler_cancellation=True,
        print=None,
    )


def start(port: int, processes: int) -> list[BaseProcess]:
    """`processes` baseline servers on `port`, once they all accept connections."""
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = [
        ctx.Process(target=_main, args=(port,), daemon=True) for _ in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        stack.wait_ready(
            None,
            lambda: stack.answers(f"http://127.0.0.1:{port}/api/pmd/bdr/sse"),
            "the baseline servers",
        )
    except RuntimeError:
        stop(procs)
        raise
    time.sleep(1.0)  # every process bound, not only the first
    return procs


def stop(procs: list[BaseProcess]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.join(10)

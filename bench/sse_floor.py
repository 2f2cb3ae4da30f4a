"""The baseline under `bench.sse --box`'s flood and storms: the same client processes, opening
the same number of streams at once, against a bare aiohttp app. As many processes as the
service ran (one port, SO_REUSEPORT, the same backlog and keep-alive, no access log, as
`server.py` serves) each run an app of two routes and nothing else: GET /api/pmd/bdr/sse
answers a fixed opening (`200`, the SSE headers, `retry:` and `connected`) and holds the
stream, and POST /api/pmd/bdr/sse-ticket a fixed ticket. No middleware, no token, no query, no hub.

What it leaves is what a storm costs on this box with aiohttp whatever the service does: the
clients' work, the kernel's TCP set-up of both ends, and aiohttp's own per request (its parser,
request, response and handler task). The service's flood and storms are reported as multiples
of this baseline's, measured in the same run: the part that is the service's own.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import socket
import time

from aiohttp import web

from pmd_service.web.serve import KEEPALIVE_SECONDS, LISTEN_BACKLOG

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


async def _serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/api/pmd/bdr/sse", _stream)
    app.router.add_post("/api/pmd/bdr/sse-ticket", _ticket)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, keepalive_timeout=KEEPALIVE_SECONDS
    )
    await runner.setup()
    await web.SockSite(runner, sock, backlog=LISTEN_BACKLOG).start()
    await asyncio.Event().wait()


def _main(port: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_serve(port))


class FloorServers:
    """`processes` baseline server processes on `port`; `pids` for the CPU split."""

    def __init__(self, port: int, processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs = [
            ctx.Process(target=_main, args=(port,), daemon=True) for _ in range(processes)
        ]
        for p in self.procs:
            p.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the baseline servers did not start") from None
                time.sleep(0.05)
        time.sleep(1.0)  # every process bound, not only the first

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.join(10)

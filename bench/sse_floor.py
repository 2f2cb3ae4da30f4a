"""The floor under `bench.sse --box`'s reconnect storm: the same client processes, reopening
the same number of streams at once, against servers that do no work at all. Each floor server
process (as many as the service ran, on one port with SO_REUSEPORT and the same backlog) reads
a request up to its blank line and answers with a fixed opening (`200`, the SSE headers,
`retry:` and `connected`), then holds the socket. No parsing, no token, no query, no hub.

What it leaves is what a storm costs on this box whatever the server does: the clients' own
work and the kernel's TCP set-up of both ends, on the same cores. The service's storm is then
reported as a multiple of this floor, measured in the same run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import time
from typing import Any

from pmd_service.web.serve import LISTEN_BACKLOG

BODY = b"retry: 3000\n\nevent: connected\ndata: {}\n\n"
OPENING = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n"
)


class _Held(asyncio.Protocol):
    __slots__ = ("answered", "transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.answered = False

    def data_received(self, data: bytes) -> None:
        # A request's head fits one segment here; nothing more is read after the answer.
        if not self.answered and b"\r\n\r\n" in data:
            self.answered = True
            self.transport.write(OPENING)


async def _serve(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    server = await asyncio.get_running_loop().create_server(
        _Held, sock=sock, backlog=LISTEN_BACKLOG
    )
    await server.serve_forever()


def _main(port: int) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_serve(port))


class FloorServers:
    """`processes` floor server processes on `port`; `pids` for the CPU split."""

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
                    raise RuntimeError("the floor servers did not start") from None
                time.sleep(0.05)
        time.sleep(0.5)  # every process bound, not only the first

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.join(10)


def storm_summary(storm: list[dict[str, Any]], holding: int, t0: float) -> dict[str, Any]:
    """The storm's figures from the clients' answers: how long until all were back (inf when
    not all), how many were, and the answers that were not 200."""
    from collections import Counter

    statuses = sum((Counter(r["statuses"]) for r in storm), Counter())
    reopened = sum(r["opened"] for r in storm)
    return {
        "storm_s": max(r["last"] for r in storm) - t0 if reopened == holding else float("inf"),
        "storm_reopened": reopened,
        # Streams that came back with Last-Event-ID (the others had received no event id).
        "storm_resumed": sum(r.get("resumed", 0) for r in storm),
        "storm_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "storm_failures": dict(sum((Counter(r.get("failures", {})) for r in storm), Counter())),
    }

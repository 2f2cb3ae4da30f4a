"""One machine's cores: `python server.py` with SERVER_PROCESSES=1 and =2, `python -m bench.processes`.

Not a test: prints figures, exits 0. On a fresh database with the posts benchmark's data (a
user with 10,000 artworks), for each process count: list requests per second (GET
/api/pmd/posts?limit=20 from 32 concurrent loopback clients for a fixed time, small pages so the
server's own work dominates) and 1,000 SSE streams held (connected, then the server processes'
total RSS and their LISTEN connections counted). The load comes from this process, on the same
machine: with 2 cores, client and servers share them, which caps what a second process can add.

Then SIGTERM: how long one `python server.py` takes from the signal to its exit with 2,000 SSE
streams open, against the same exit with none open (measured in the same run, alternating).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp
import asyncpg

from bench import cli
from bench.posts import seed
from bench.sse import Receipts, SseClient
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from pmd_service.host.tokens import mint_token
from support.measures import tree_rss_kb
from support.stack import free_port, fresh_stack, listeners, service_env, start_server, stop

CLIENTS = 32
STREAMS = 1000
STREAMS_AT_SHUTDOWN = 2000
LOAD_SECONDS = 8.0
PROCESS_COUNTS = (1, 2)


async def list_rate(base: str, token: str) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=CLIENTS, force_close=False)
    done = 0
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as http:
        deadline = time.monotonic() + LOAD_SECONDS

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with http.get("/api/pmd/posts?limit=20") as resp:
                    assert resp.status == 200, resp.status
                    await resp.read()
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(CLIENTS)))
        return done / (time.monotonic() - start)


async def hold_streams(port: int, token: str, count: int = STREAMS) -> list[SseClient]:
    loop = asyncio.get_running_loop()
    request = (
        f"GET /api/pmd/bdr/sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    gate, receipts = asyncio.Semaphore(50), Receipts()

    async def one() -> SseClient:
        async with gate:
            _, stream = await loop.create_connection(
                lambda: SseClient(0, request, receipts), "127.0.0.1", port
            )
            await asyncio.wait_for(stream.ready, 30)
            return stream

    return await asyncio.gather(*(one() for _ in range(count)))


async def measure(settings: Settings, token: str, processes: int) -> dict[str, Any]:
    port = free_port()
    env = service_env(settings, SERVER_PROCESSES=str(processes), SSE_MAX_PER_USER="1000")
    server = await asyncio.to_thread(start_server, env, port)
    conn = await asyncpg.connect(settings.database_url)
    try:
        # Every process up (one answering /readyz is not all): each holds its LISTEN connection.
        while await listeners(conn) < processes:  # noqa: ASYNC110 - nothing announces it
            await asyncio.sleep(0.05)
        rate = await list_rate(f"http://127.0.0.1:{port}", token)
        idle = tree_rss_kb(server.pid) / 1024
        streams = await hold_streams(port, token)
        held = tree_rss_kb(server.pid) / 1024
        listening = await listeners(conn)
        for s in streams:
            assert s.transport is not None
            s.transport.close()
    finally:
        stop(server)
        await conn.close()
    return {
        "processes": processes,
        "list_rps": rate,
        "streams": len(streams),
        "rss_idle_mb": idle,
        "rss_streams_mb": held,
        "kb_per_stream": (held - idle) * 1024 / len(streams),
        "listeners": listening,
    }


async def stream_tokens(settings: Settings, n: int) -> list[str]:
    """Tokens of `n` seeded users: a user may hold at most 1,000 streams (SSE_MAX_PER_USER)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT public_sqid FROM users WHERE public_sqid IS NOT NULL ORDER BY id LIMIT $1", n
        )
    finally:
        await conn.close()
    assert len(rows) == n, rows
    return [mint_token(settings.jwt_secret_key, r["public_sqid"]) for r in rows]


async def sigterm_exit(settings: Settings, tokens: list[str], streams: int) -> float:
    """Seconds from SIGTERM to the exit of one server process holding `streams` streams,
    spread evenly over the users of `tokens`."""
    port = free_port()
    env = service_env(settings, SSE_MAX_PER_USER=str(STREAMS))
    server = await asyncio.to_thread(start_server, env, port)
    try:
        share = streams // len(tokens)
        held = [s for t in tokens for s in await hold_streams(port, t, share)] if streams else []
        started = time.monotonic()
        server.terminate()
        await asyncio.to_thread(server.wait, 60)
        took = time.monotonic() - started
        for s in held:
            if s.transport is not None:
                s.transport.close()
    finally:
        stop(server)
    return took


async def sigterm(settings: Settings, rounds: int = 3) -> dict[str, Any]:
    tokens = await stream_tokens(settings, STREAMS_AT_SHUTDOWN // STREAMS)
    idle, busy = [], []
    for _ in range(rounds):
        idle.append(await sigterm_exit(settings, tokens, 0))
        busy.append(await sigterm_exit(settings, tokens, STREAMS_AT_SHUTDOWN))
    med_idle, med_busy = statistics.median(idle), statistics.median(busy)
    print(f"SIGTERM → exit: {med_busy:.2f} s with {STREAMS_AT_SHUTDOWN:,} streams open, "
          f"{med_idle:.2f} s with none ({med_busy / med_idle:.2f}×; medians of {rounds})")  # fmt: skip
    return {"streams": STREAMS_AT_SHUTDOWN, "busy_s": busy, "idle_s": idle,
            "busy_median_s": med_busy, "idle_median_s": med_idle}  # fmt: skip


async def run() -> dict[str, Any]:
    async with fresh_stack() as settings:
        _, token = await seed(
            settings.database_url, PublicIds(settings.sqids_alphabet), settings.jwt_secret_key
        )
        results = [await measure(settings, token, n) for n in PROCESS_COUNTS * 2]
        shutdown = await sigterm(settings)
    summary = []
    for n in PROCESS_COUNTS:
        runs = [r for r in results if r["processes"] == n]
        best = max(runs, key=lambda r: r["list_rps"]) | {
            "list_rps_runs": [r["list_rps"] for r in runs]
        }
        summary.append(best)
        print(f"{n} process(es): list {best['list_rps']:7.0f} req/s (best of runs: "
              f"{', '.join(f'{r:.0f}' for r in best['list_rps_runs'])}); {best['streams']} streams held, "
              f"{best['rss_streams_mb']:.0f} MB RSS in all ({best['kb_per_stream']:.1f} KB a stream), "
              f"{best['listeners']} LISTEN connection(s)")  # fmt: skip
    one, two = summary[0]["list_rps"], summary[1]["list_rps"]
    print(f"2 processes ÷ 1: {two / one:.2f}× the list requests per second")
    return {"by_processes": summary, "sigterm": shutdown}


def main() -> None:
    args = cli.parser("processes", __doc__).parse_args()
    cli.save(args.json, asyncio.run(run()))


if __name__ == "__main__":
    main()

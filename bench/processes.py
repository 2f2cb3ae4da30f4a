"""One machine's cores: `python server.py` on 1 and 2 processes, `python -m bench.processes`.

Not a test: prints figures, exits 0. For each process count (twice, the best kept): list
requests per second (32 loopback clients) and 1,000 SSE streams held (RSS, LISTEN connections);
then the seconds from SIGTERM to a server's exit with 2,000 streams open and with none.
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
from bench.storm_client import Client
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from support.measures import tree_rss_kb
from support.seeding import seed_stream_users
from support.stack import free_port, fresh_stack, listeners, service_env, start_server, stop

CLIENTS = 32
STREAMS = 1000
STREAMS_AT_SHUTDOWN = 2000
LOAD_SECONDS = 8.0
PROCESS_COUNTS = (1, 2)


async def list_rate(base: str, token: str) -> float:
    done = 0
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=CLIENTS)
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


async def measure(settings: Settings, token: str, processes: int) -> dict[str, Any]:
    port = free_port()
    env = service_env(settings, SERVER_PROCESSES=str(processes), SSE_MAX_PER_USER=str(STREAMS))
    server = await asyncio.to_thread(start_server, env, port)
    conn = await asyncpg.connect(settings.database_url)
    try:
        # Every process up (one answering /readyz is not all): each holds its LISTEN connection.
        while await listeners(conn) < processes:  # noqa: ASYNC110 - nothing announces it
            await asyncio.sleep(0.05)
        rate = await list_rate(f"http://127.0.0.1:{port}", token)
        idle = tree_rss_kb(server.pid) / 1024
        client = Client(source="127.0.0.1", port=port, users=[(0, token)], per_user=STREAMS)
        await client.open(0, None, 50)
        held = tree_rss_kb(server.pid) / 1024
        listening, streams = await listeners(conn), len(client.streams)
        client.close()
    finally:
        stop(server)
        await conn.close()
    return {"processes": processes, "list_rps": rate, "streams": streams, "rss_idle_mb": idle,
            "rss_streams_mb": held, "kb_per_stream": (held - idle) * 1024 / streams,
            "listeners": listening}  # fmt: skip


async def sigterm_exit(settings: Settings, tokens: list[str], streams: int) -> float:
    """Seconds from SIGTERM to the exit of one server process holding `streams` streams,
    spread evenly over `tokens`' users."""
    port = free_port()
    server = await asyncio.to_thread(
        start_server, service_env(settings, SSE_MAX_PER_USER=str(STREAMS)), port
    )
    try:
        users = list(enumerate(tokens))
        client = Client(source="127.0.0.1", port=port, users=users, per_user=streams // len(users))
        await client.open(0, None, 50)
        started = time.monotonic()
        server.terminate()
        await asyncio.to_thread(server.wait, 60)
        took = time.monotonic() - started
        client.close()
    finally:
        stop(server)
    return took


async def sigterm(settings: Settings, tokens: list[str], rounds: int = 3) -> dict[str, Any]:
    idle, busy = [], []
    for _ in range(rounds):
        idle.append(await sigterm_exit(settings, tokens, 0))
        busy.append(await sigterm_exit(settings, tokens, STREAMS_AT_SHUTDOWN))
    med_idle, med_busy = statistics.median(idle), statistics.median(busy)
    print(
        f"SIGTERM → exit: {med_busy:.2f} s with {STREAMS_AT_SHUTDOWN:,} streams open, "
        f"{med_idle:.2f} s with none ({med_busy / med_idle:.2f}×; medians of {rounds})"
    )
    return {"streams": STREAMS_AT_SHUTDOWN, "busy_s": busy, "idle_s": idle,
            "busy_median_s": med_busy, "idle_median_s": med_idle}  # fmt: skip


async def run() -> dict[str, Any]:
    async with fresh_stack() as settings:
        ids = PublicIds(settings.sqids_alphabet)
        _, token = await seed(settings.database_url, ids, settings.jwt_secret_key)
        results = [await measure(settings, token, n) for n in PROCESS_COUNTS * 2]
        # Users for the shutdown's streams: one may hold at most STREAMS (SSE_MAX_PER_USER).
        users = STREAMS_AT_SHUTDOWN // STREAMS
        seeded = await seed_stream_users(settings.database_url, ids, settings.jwt_secret_key, users)
        shutdown = await sigterm(settings, seeded.tokens)
    summary = []
    for n in PROCESS_COUNTS:
        runs = [r for r in results if r["processes"] == n]
        best = max(runs, key=lambda r: r["list_rps"])
        best["list_rps_runs"] = [r["list_rps"] for r in runs]
        summary.append(best)
        print(
            f"{n} process(es): list {best['list_rps']:7.0f} req/s (best of runs: "
            f"{', '.join(f'{r:.0f}' for r in best['list_rps_runs'])}); {best['streams']} "
            f"streams held, {best['rss_streams_mb']:.0f} MB RSS in all "
            f"({best['kb_per_stream']:.1f} KB a stream), {best['listeners']} LISTEN connection(s)"
        )
    ratio = summary[1]["list_rps"] / summary[0]["list_rps"]
    print(f"2 processes ÷ 1: {ratio:.2f}× the list requests per second")
    return {"by_processes": summary, "sigterm": shutdown}


def main() -> None:
    args = cli.parser("processes", __doc__).parse_args()
    cli.save(args.json, asyncio.run(run()))


def section(f: dict[str, Any]) -> dict[str, Any]:
    rows = f["by_processes"]
    return {
        "rows": rows,
        "ratio": rows[1]["list_rps"] / rows[0]["list_rps"],
        "sigterm": f["sigterm"],
    }


if __name__ == "__main__":
    main()

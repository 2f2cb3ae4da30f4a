"""Benchmark of the SSE stream over loopback: `python -m bench.sse`.

Not a test: it prints figures and exits 0. One `python server.py` process, 1,000 to 20,000
subscribers (ten a user) held by this process: memory a subscriber, LISTEN connections, one
user's event and a burst to every user, timed from their UPDATE, and the longest GC pause (issue
#17's targets in docs/benchmarks.md). `--box`: the whole box instead (bench/sse_box.py).
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench import cli, sse_box
from bench.storm_client import Client
from pmd_service.core.db import connect
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from support.measures import rss_kb
from support.seeding import Seeded, seed_stream_users
from support.stack import free_port, fresh_stack, listener_pids, service_env, start_server, stop

PER_USER = 10
LEVELS = (1_000, 5_000, 10_000, 20_000)
FD_HEADROOM = 100  # descriptors a process needs besides its streams (pool, listener, Redis...)
WARM = 100
CONNECT_CONCURRENCY = 100
SINGLE_ROUNDS = 200
# The server's GC figures on its /metrics (sse/heap.py): here `gc_` and the name without
# `_total`, in ms for seconds.
GC = ("pause_max_seconds", "pause_max_cpu_seconds", "pause_max_generation", "pauses_total",
      "freezes_total", "reclaims_total")  # fmt: skip


async def run_level(
    settings: Settings, seeded: Seeded, subscribers: int, db: Any, log: Path
) -> dict[str, Any]:
    """One level's figures, on a server of its own."""
    users = subscribers // PER_USER
    env = service_env(settings, HOST="127.0.0.1", SSE_MAX_PER_USER=str(PER_USER))
    port = free_port()
    with log.open("wb") as out:
        server = await asyncio.to_thread(start_server, env, port, out)
    tokens = list(enumerate(seeded.tokens[:users]))
    client = Client(source="127.0.0.1", port=port, users=tokens, per_user=PER_USER)
    try:
        started = time.monotonic()
        opened = [await client.open(0, WARM // PER_USER, CONNECT_CONCURRENCY)]
        warm = len(client.streams)
        await asyncio.sleep(0.5)
        rss_warm = rss_kb(server.pid)
        opened.append(await client.open(WARM // PER_USER, None, CONNECT_CONCURRENCY))
        if len(client.streams) != subscribers:
            raise RuntimeError(f"{len(client.streams)} of {subscribers} opened: {opened}")
        lv: dict[str, Any] = {"subscribers": subscribers, "connect_s": time.monotonic() - started}
        await asyncio.sleep(1.0)  # idle: let the server settle
        rss_all = rss_kb(server.pid)
        lv |= {"rss_mb": rss_all / 1024, "listeners": len(await listener_pids(db)),
               "kb_per_subscriber": (rss_all - rss_warm) / (subscribers - warm)}  # fmt: skip

        # (a) one user's BDR changes, everyone else stays connected; (b) every user's in one
        # statement (a trigger per row).
        one, bdr_ids = sse_box.OneClient(client), seeded.bdr_ids[:users]
        events = await sse_box.one_events(db, bdr_ids, one, SINGLE_ROUNDS, PER_USER, 0.005)
        burst = await sse_box.bursts(db, bdr_ids, one, subscribers)
        event = events["event"]
        missing = event["expected"] - event["samples"]  # lost, or an event twice (negative)
        lv |= {"single": event, "burst": burst["burst"],
               "burst_update_ms": burst["burst"]["update_ms"],
               "burst_delivered": burst["burst"]["delivered"][-1],
               "errors": events["misrouted"] + abs(missing) + burst["burst_wrong"] + client.lost,
               } | await gc_figures(port)  # fmt: skip
    finally:
        client.close()
        await asyncio.to_thread(stop, server)
    return lv


async def gc_figures(port: int) -> dict[str, float]:
    """The server's GC figures so far, from its /metrics."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    values = dict(line.partition(" ")[::2] for line in (await reader.read()).decode().splitlines())
    writer.close()
    out: dict[str, float] = {}
    for name in GC:
        got = float(values[f"pmd_gc_{name}"])
        key = "gc_" + name.removesuffix("_total").replace("_seconds", "_ms")
        out[key] = got * 1000 if name.endswith("_seconds") else int(got)
    return out


async def bench(levels: list[int]) -> list[dict[str, Any]]:
    async with fresh_stack() as settings:
        ids = PublicIds(settings.sqids_alphabet)
        seeded = await seed_stream_users(settings.database_url, ids, settings.jwt_secret_key,
                                         max(map(fitting, levels)) // PER_USER)  # fmt: skip
        db = await connect(settings.database_url, "pmd-bench")
        results = []
        try:
            for n in levels:
                held = fitting(n)
                note = f" ({n:,} asked; the descriptor limit allows {held:,})" if held < n else ""
                print(f"{held:,} subscribers{note} ...")
                log = settings.vault_path.parent / f"server-{held}.log"
                lv = await run_level(settings, seeded, held, db, log) | {"asked": n}
                cli.show("  (a) one user's event, (b) a burst to all", lv)
                results.append(lv)
        finally:
            await db.close()
    return results


def raise_fd_limit(needed: int) -> None:
    """The soft RLIMIT_NOFILE up to what `needed` streams take, as far as the hard limit goes;
    the server inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + FD_HEADROOM
    target = want if hard == resource.RLIM_INFINITY else min(max(soft, want), hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def fitting(subscribers: int) -> int:
    """`subscribers`, or as many (in whole users) as the descriptor limit lets both ends hold."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return subscribers
    return min(subscribers, (soft - FD_HEADROOM) // PER_USER * PER_USER)


def main() -> None:
    parser = cli.parser("sse", __doc__)
    parser.add_argument("--levels", help="comma-separated subscriber counts (multiples of 10); "
                        "with --box, stream counts (multiples of 100)")  # fmt: skip
    parser.add_argument("--box", action="store_true", help="the whole box (bench/sse_box.py)")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")] if args.levels else None
    # Memory a stream is the growth past the warm streams, so a level must hold more than those.
    warm = sse_box.CLIENTS * sse_box.PER_USER if args.box else WARM
    if levels and (low := [n for n in levels if n <= warm]):
        parser.error(f"--levels {','.join(map(str, low))}: each level must be above the {warm} "
                     "warm streams the memory a stream is measured from")  # fmt: skip
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, as it goes
    if args.box:
        run = sse_box.run(levels or sse_box.levels_for(sse_box.TOP))
        cli.save(args.json, {"box": asyncio.run(run)})
    else:
        levels = levels or list(LEVELS)
        raise_fd_limit(max(levels))
        cli.save(args.json, asyncio.run(bench(levels)))


def section(levels: list[dict[str, Any]]) -> dict[str, Any]:
    top = max(lv["subscribers"] for lv in levels)
    return {
        "levels": levels,
        "top": top,
        "kb": max(lv["kb_per_subscriber"] for lv in levels),
        "p99": max(lv["single"]["p99_ms"] for lv in levels),
        "worst": max(lv["burst"]["max_ms"] for lv in levels),
        "gc_max": max(lv.get("gc_pause_max_ms", float("inf")) for lv in levels),
        "gc_cpu": max(lv.get("gc_pause_max_cpu_ms", float("inf")) for lv in levels),
        "delivered": all(
            lv["burst_delivered"] == f"{lv['subscribers']}/{lv['subscribers']}"
            and lv["errors"] == 0
            for lv in levels
        ),
        "one": all(lv["listeners"] == 1 for lv in levels),
        "fd_bound": top < 20_000 and any(lv.get("asked", 0) > lv["subscribers"] for lv in levels),
    }


if __name__ == "__main__":
    main()

"""Chaos run: `python -m runs.chaos [--duration 180]`, or `--ci` for the slim variant.

A real stack on loopback under a workload and faults, then checks.py's checks (exit 1 on any
violation; docs/reliability.md, "Chaos runs")."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from msgspec.structs import replace

from pmd_service.core.db import create_pool
from pmd_service.core.objects import open_store
from pmd_service.core.settings import Settings
from runs.chaos import checks
from runs.chaos.faults import Faults
from runs.chaos.procs import Proc, Supervisor, Tmpfs
from runs.chaos.seed import seed
from runs.chaos.sse import SseClient, start_streams
from runs.chaos.workload import Api, Ledger, Plan, cancel, close_pool, play
from runs.options import parse_with_workload
from support import chaos_pages, tools
from support.mailbox import Mailbox
from support.pgbouncer import PgBouncer, running_pgbouncer
from support.redis import RedisServer
from support.seaweed import create_bucket, running_seaweed
from support.seeding import Factory
from support.stack import connected, fresh_stack, service_env

# Fewer than the pools behind it, so processes share server sessions, as in production.
POOLER_CONNECTIONS = 12


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m runs.chaos", description=__doc__.split("\n")[0])
    switches = {
        "--ci": "slim: shorter workload, every fault once",
        "--keep": "keep the run folder (logs) on success",
        "--store": "ZIPs in a bucket of a real S3 server (SeaweedFS), frozen, later stopped, "
        "instead of the full disk",
        "--break-downloads": "flip a byte of every downloaded body: the run must fail",
        "--doc": "save this run's output and render it into docs/",
    }
    for switch, what in switches.items():
        p.add_argument(switch, action="store_true", help=what)
    p.add_argument(
        "--pooler",
        choices=["none", "pgbouncer"],
        default="none",
        help="pgbouncer: the service's pools through PgBouncer (transaction mode), "
        "which is also paused",
    )
    return parse_with_workload(p, argv, ci_users=6, ci_duration=75)


def schedule(f: Faults, duration: float, ci: bool) -> Plan:
    """Each fault at a fraction of the workload (the full run repeats the process faults)."""
    frozen, pooled = f.store is not None, f.pooler is not None
    plan: list[tuple[float, Callable[[], Coroutine[Any, Any, None]], bool]] = [
        *([(0.0, f.prepare_frozen, True)] if frozen else []),
        (0.06, f.kill_worker, True),
        (0.14, f.kill_listeners, True),
        (0.20, f.redis_down, True),
        (0.27, f.smtp_down, True),
        *([(0.30, f.store_frozen, True)] if frozen else []),
        *([(0.36, f.pooler_paused, False)] if pooled else []),
        (0.45, f.sigterm_server, True),
        (0.52, f.store_down if frozen else f.disk_full, True),
        # No server restarts or listener kills meanwhile: the pause counts the listeners.
        *([(0.62, f.pooler_paused, True)] if pooled else []),
        (0.70, f.kill_listeners, True),
        (0.72, f.kill_worker, False),  # after the disk is free again: one fault at a time
        (0.78, f.sigterm_server, True),
        (0.88, f.kill_listeners, False),
        (0.92, f.sigterm_server, False),
    ]
    return [(frac * duration, fn) for frac, fn, in_ci in plan if in_ci or not ci]


async def run(args: argparse.Namespace, run_dir: Path, tmpfs: Tmpfs | None) -> int:
    async with contextlib.AsyncExitStack() as undo:
        weed = undo.enter_context(running_seaweed()) if args.store else None
        redis, smtp = RedisServer(run_dir / "redis"), Mailbox()
        for server in (redis, smtp):
            await asyncio.to_thread(server.start)
            undo.push_async_callback(asyncio.to_thread, server.stop)
        os.environ["REDIS_URL"] = redis.url  # fresh_stack then leaves the shared Redis alone
        settings: Settings = replace(
            await undo.enter_async_context(fresh_stack()), zip_path=run_dir / "bdr"
        )
        t = time.monotonic()
        async with connected(settings.database_url or "", "pmd-chaos") as conn:
            data = await seed(
                Factory(conn, settings),
                users=args.users,
                posts_per_user=300 if not args.ci else 220,
                victim_posts=160,
                rng=random.Random(20260509),
            )
        print(
            f"seeded {len(data.users)} users × {len(data.users[0].downloads) + 75} posts "
            f"(+ a victim user with {len(data.victim.downloads)} big BMPs), "
            f"{sum(p.data is None for p in data.posts.values())} missing files, "
            f"in {time.monotonic() - t:.0f} s"
        )
        bouncer: PgBouncer | None = None
        service = settings
        if args.pooler == "pgbouncer":
            bouncer = await asyncio.to_thread(
                undo.enter_context, running_pgbouncer(settings.database_url, POOLER_CONNECTIONS)
            )
            # The run's own connections stay direct: they must see the database while it pauses.
            service = replace(
                settings,
                database_url=bouncer.url,
                database_pooler="pgbouncer",
                database_direct_url=settings.database_url,
            )
            print(
                f"the servers' and workers' pools through PgBouncer (transaction mode, "
                f"{POOLER_CONNECTIONS} server connections) at {bouncer.url}; LISTEN and "
                "migrations direct"
            )
        env = service_env(
            service,
            REDIS_URL=redis.url,
            PMD_DEV="false",
            PMD_DATA_DIR=str(run_dir / "data"),
            BDR_DAILY_LIMIT=str(checks.DAILY_LIMIT),
            # 8 MiB of the 640 MiB tmpfs: new requests get 503 while the disk is full.
            ZIP_MIN_FREE_BYTES=str(8 * 2**20),
            JOB_RETRY_BASE_SECONDS="1",
            JOB_STALE_SECONDS="15",
            JOB_PENDING_GRACE_SECONDS="5",
            # An email lease of 30 s: one a killed worker took is sent again inside the drain.
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(smtp.port),
            SMTP_TIMEOUT="5",
            BASE_URL="http://pmd.chaos",
            SSE_MAX_PER_USER="10",
        )
        modes: list[dict[str, str]] = [{}, {}]
        if weed is not None:
            bucket_name = await create_bucket(weed)
            store_env = weed.env(bucket_name, "chaos")
            # Retries 3, 12 and 48 s apart outlast the store's outage: no BDR may fail of it.
            env |= store_env | {"JOB_RETRY_BASE_SECONDS": "3"}
            settings = replace(settings, **{k.lower(): v for k, v in store_env.items()})
            modes = [{"ZIP_DOWNLOAD_MODE": "redirect"}, {"ZIP_DOWNLOAD_MODE": "proxy"}]
            print(
                f"ZIPs in {store_env['ZIP_STORE']} on SeaweedFS at {weed.endpoint}; "
                "server-a redirects downloads, server-b streams them"
            )
        logs = run_dir / "logs"
        logs.mkdir(parents=True)
        servers = [
            Proc.service(f"server-{c}", env | m, logs, True)
            for c, m in zip("ab", modes, strict=True)
        ]
        workers = [Proc.service(f"worker-{n}", env, logs, False) for n in (1, 2)]
        for p in [*servers, *workers]:
            undo.push_async_callback(asyncio.to_thread, p.stop)
            p.start()
        for s in servers:
            await s.wait_healthy()
        pool = await create_pool(settings.database_url or "", "pmd-chaos", max_size=12)
        undo.push_async_callback(close_pool, pool)
        http = await undo.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        tasks: list[asyncio.Task[None]] = []
        undo.push_async_callback(cancel, tasks)
        api = Api(http, servers, Ledger(t0=time.monotonic()))
        clients = [
            SseClient(api, u, f"sse-{u.handle}-{n}", home, ticket)
            for u in [*data.users, data.victim]
            for n, (home, ticket) in enumerate([(0, False), (1, True), (u.id % 2, u.id % 3 == 0)])
        ]
        tasks += await start_streams(clients, 30)
        # The full run keeps the disk full past the last retry; the CI run frees it in time.
        faults = Faults(
            api.ledger,
            api,
            pool,
            workers,
            redis,
            smtp,
            tmpfs,
            data.victim,
            clients,
            store=weed,
            bucket=settings.zip_bucket,
            access=settings.s3_access,
            pooler=bouncer,
            smtp_seconds=20.0 if args.ci else 40.0,
            disk_seconds=12.0 if args.ci else 28.0,
            frozen_seconds=12.0 if args.ci else 20.0,
        )
        # Whatever exits unasked is started again, as systemd or a container runtime would.
        procs = {p.name: p for p in [*servers, *workers]}
        supervisor = Supervisor(
            procs,
            lambda name: asyncio.to_thread(procs[name].start),
            ("server", "worker"),
            api.ledger.say,
        )
        tasks.append(asyncio.create_task(supervisor.watch()))
        bucket = settings.zip_bucket
        zip_store = open_store(bucket, settings.s3_access) if bucket is not None else None
        print(
            f"workload: {len(data.users)} actors for {args.duration:.0f} s, "
            f"{len(clients)} SSE clients; faults:",
            flush=True,
        )
        plan = [] if args.no_faults else schedule(faults, args.duration, args.ci)
        await play(
            api,
            pool,
            data,
            plan,
            args.duration,
            bdr_root=settings.zip_path,
            zip_store=zip_store,
            break_downloads=args.break_downloads,
        )
        settled = await drain(faults, 150.0 if args.ci else 240.0)
        report = await checks.check_all(
            api,
            pool,
            data,
            clients,
            settings,
            zip_store,
            smtp,
            settled=settled,
            duration=args.duration,
        )
        await cancel(tasks)
        if faults.disk_bdr is not None:
            row = await pool.fetchrow(
                "SELECT status, attempts, error_message"
                " FROM batch_download_requests WHERE id = $1::uuid",
                faults.disk_bdr,
            )
            assert row is not None
            why = row["error_message"] or "no error"
            report.info(
                f"BDR requested while the disk was full: {row['status']} after "
                f"{row['attempts']} attempts ({why})"
            )
        thirds = [0, 0, 0]
        for at in api.ledger.created_at:
            thirds[min(2, int(3 * at / args.duration))] += 1
        report.info(f"BDRs created in each third of the workload: {thirds}")
        checks.check_processes(report, [*servers, *workers])
        return checks.conclude(report, api.ledger, "chaos")


async def drain(f: Faults, bound: float) -> bool:
    start = time.monotonic()
    if f.redis.proc is None:
        await asyncio.to_thread(f.redis.start)
    if f.smtp.controller is None:
        await asyncio.to_thread(f.smtp.start)
    if f.tmpfs is not None:
        f.tmpfs.empty()
    for p in [*f.api.servers, *f.workers]:
        if not p.alive():
            p.start()
    for s in f.api.servers:
        await s.wait_healthy()
    return await checks.settle(f.pool, f.ledger, bound - (time.monotonic() - start))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if (absent := tools.missing(["pgbouncer"] if args.pooler == "pgbouncer" else [])) is not None:
        print(f"chaos: {absent}", file=sys.stderr)
        return 2
    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="pmd-chaos-"))
    full_disk = not args.store and not args.no_faults
    tmpfs = Tmpfs(run_dir / "bdr", size_mb=640) if Tmpfs.possible() and full_disk else None
    code = 1
    transcript = chaos_pages.Transcript.start() if args.doc else None
    try:
        if tmpfs is not None:
            tmpfs.mount()
            print(f"ZIP_PATH on its own {tmpfs.size_mb} MiB tmpfs at {tmpfs.path}")
        else:
            (run_dir / "bdr").mkdir()
            if full_disk:
                print("not root: the full-disk fault will be skipped")
        code = asyncio.run(run(args, run_dir, tmpfs))
    finally:
        if tmpfs is not None:
            tmpfs.unmount()
        wall = f"wall time {time.monotonic() - started:.0f} s"
        print(f"{wall}; logs in {run_dir / 'logs'}" if code or args.keep else wall)
        if code == 0 and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        if transcript is not None:
            transcript.stop()
            argv = sys.argv[1:] if argv is None else argv
            print(f"wrote this run into {chaos_pages.write(argv, transcript.getvalue(), code)}")
    return code

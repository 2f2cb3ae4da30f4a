"""Run the HTTP server: `python -m pmd_service serve` (or `python server.py` from a checkout).

With SERVER_PROCESSES=N (default 1) N processes accept on the same port: each binds it with
SO_REUSEPORT and the kernel spreads new connections over them, so one machine's every core
serves requests and holds streams. Each process runs its own app, pool and LISTEN connection
(an SSE stream lives in the process that accepted it). The parent only starts them, passes
SIGTERM/SIGINT on and exits once they have; if one dies, it stops the others and exits 1, so
the supervisor above (systemd, Kubernetes, Docker) restarts the lot.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from multiprocessing.connection import wait
from types import FrameType

import asyncpg
import msgspec
from aiohttp import web

from ..core.db import DatabaseSetupError, check_budget, connections_needed
from ..core.settings import Settings
from ..core.startup import load_settings
from ..dev.embedded import services
from .app import create_app

log = logging.getLogger(__name__)


def main() -> None:
    settings = load_settings("pmd-server", embedded=services)
    check_connections(settings)
    if settings.server_processes == 1:
        run(settings)
    else:
        sys.exit(supervise(settings))


def run(settings: Settings, *, shared_port: bool = False) -> None:
    web.run_app(
        create_app(settings, tend_heap=True),
        host=settings.host,
        port=settings.port,
        reuse_port=shared_port,
        # On SIGTERM aiohttp closes the listening socket, then our on_shutdown ends every
        # stream (with `reconnect`), then requests in flight get this long to finish.
        shutdown_timeout=settings.shutdown_grace_seconds,
        # Idle keep-alive connections (and clients that never finish a request) are closed
        # after 15 s instead of aiohttp's 75 s.
        keepalive_timeout=15,
        access_log=None,
        print=lambda msg: None,
    )


def check_connections(settings: Settings) -> None:
    """Before any process starts: the pools and LISTEN connections of all SERVER_PROCESSES must
    fit in what the database allows, or none starts (one line, exit status 2)."""
    needed = connections_needed(settings, settings.server_processes, settings.db_pool_max, 1)
    what = (
        f"{settings.server_processes} server process(es) with DB_POOL_MAX={settings.db_pool_max}"
        " and a LISTEN connection each"
    )
    try:
        warning = asyncio.run(
            check_budget(settings, needed, what, "SERVER_PROCESSES or DB_POOL_MAX")
        )
    except DatabaseSetupError as exc:
        print(f"pmd-server: {exc}", file=sys.stderr)
        sys.exit(2)
    except (OSError, asyncpg.PostgresError) as exc:
        # Unreachable now: each process's start will find out for itself, and retry.
        log.warning("could not check the database's connection limit: %s", exc)
        return
    if warning:
        log.warning("%s", warning)


def _process_settings(settings: Settings, index: int) -> Settings:
    """Each process's own metrics port (SERVER_METRICS_PORT + index; 0 stays 0: any free)."""
    port = settings.server_metrics_port
    if port is None or port == 0:
        return settings
    return msgspec.structs.replace(settings, server_metrics_port=port + index)


def supervise(settings: Settings) -> int:
    # fork: the children start from this process's state (settings read, logging set up); no
    # event loop, pool or socket exists yet to be shared by mistake.
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(
            target=run,
            args=(_process_settings(settings, i),),
            kwargs={"shared_port": True},
            name=f"pmd-server-{i}",
        )
        for i in range(settings.server_processes)
    ]
    signalled = False

    def stop_all(signum: int) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    def pass_on(signum: int, frame: FrameType | None) -> None:
        nonlocal signalled
        signalled = True
        stop_all(signum)

    for child in children:
        child.start()
    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    # Until one ends: on a signal all do; otherwise that one failed and the rest are stopped.
    wait([c.sentinel for c in children])
    if not signalled:
        stop_all(signal.SIGTERM)
    for child in children:
        child.join()
    return 0 if signalled and all(c.exitcode == 0 for c in children) else 1

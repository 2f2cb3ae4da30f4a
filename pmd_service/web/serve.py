"""Run the HTTP server: `python -m pmd_service serve`. With SERVER_PROCESSES=N, N processes share
the port (SO_REUSEPORT); the parent passes signals on, and stops all when one dies."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from multiprocessing.connection import wait
from types import FrameType
from typing import Any, NoReturn

import asyncpg
import msgspec
from aiohttp import web

from .. import dev_servers
from ..api.aiohttp_adapter import name_the_server
from ..core.db import DatabaseSetupError, check_budget, connections_needed
from ..core.migrate import HostTablesMissing
from ..core.opening import SERVER_APPLICATION, open_pool
from ..core.settings import Settings
from ..core.startup import load_settings, stop, wait_for_services
from ..mail.language import check_at_start as check_email_copy
from .app import SERVER_NAME, create_app
from .connections import GuardedSite, count_failed_accepts, raise_descriptor_limit
from .reference import docs_url
from .request_metrics import MetricsPortError

PROCESS = SERVER_APPLICATION
# Longer than the proxies in front keep an idle upstream connection (Caddy's 2 min): one that
# the server closes first races the proxy's next request, and the client gets a 502.
KEEPALIVE_SECONDS = 130
LISTEN_BACKLOG = 4096
# A bind that fails for one of these is the operator's to fix: one line, no traceback.
_BIND_ERRORS = {
    errno.EADDRINUSE: "another process holds it",
    errno.EACCES: "not permitted",
    errno.EADDRNOTAVAIL: "HOST is not an address of this machine",
}

log = logging.getLogger(__name__)


def main() -> None:
    settings = load_settings(PROCESS, embedded=dev_servers, serving=True)
    check_email_copy(settings, PROCESS)
    wait_for_services(settings, PROCESS)
    check_connections(settings)
    if settings.server_processes == 1:
        run(settings)
    else:
        sys.exit(supervise(settings))


def run(settings: Settings, *, shared_port: bool = False, announce: bool = True) -> None:
    """`announce`: log where the API reference is (one process of several does)."""
    name_the_server(SERVER_NAME)
    raise_descriptor_limit()
    loop = asyncio.new_event_loop()
    count_failed_accepts(loop)
    shutting_down = False

    def shut_down() -> None:
        # Only the first signal: aiohttp's own handlers would raise again mid-shutdown.
        nonlocal shutting_down
        if not shutting_down:
            shutting_down = True
            raise web.GracefulExit()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shut_down)
    reference = docs_url(settings) if announce else None
    try:
        _run_loop(
            loop, _serve(create_app(settings, tend_heap=True), settings, shared_port, reference)
        )
    except OSError as exc:
        if "bind" not in str(exc) and not isinstance(exc, socket.gaierror):
            raise
        _cannot_listen(settings, exc)
    except MetricsPortError as exc:
        stop(f"{PROCESS}: {exc}")
    except (HostTablesMissing, DatabaseSetupError) as exc:  # one line, no traceback
        stop(f"{PROCESS}: {exc}", status=2)


async def _serve(
    app: web.Application, settings: Settings, shared_port: bool, reference: str | None
) -> None:
    """web.run_app's serving, on a GuardedSite (web/connections.py) instead of a TCPSite."""
    runner = web.AppRunner(
        app,
        # On SIGTERM, once every stream is ended, requests in flight get this long to finish.
        shutdown_timeout=settings.shutdown_grace_seconds,
        keepalive_timeout=KEEPALIVE_SECONDS,
        access_log=None,
    )
    await runner.setup()
    try:
        site = GuardedSite(
            runner,
            settings,
            SERVER_NAME,
            # Above aiohttp's 128, so a reconnect storm's SYNs are not dropped.
            backlog=LISTEN_BACKLOG,
            reuse_port=shared_port,
        )
        await site.start()
        log.info("listening on %s", site.name)
        if reference is not None:
            log.info("API reference at %s", reference)
        await asyncio.Event().wait()  # until shut_down's GracefulExit cancels this
    finally:
        await runner.cleanup()


def _run_loop(loop: asyncio.AbstractEventLoop, main: Coroutine[Any, Any, None]) -> None:
    """What web.run_app does with its loop: run until a signal, clean up, close the loop."""
    task = loop.create_task(main)
    try:
        with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
            asyncio.set_event_loop(loop)
            loop.run_until_complete(task)
    finally:
        try:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(task)
        finally:
            left = asyncio.all_tasks(loop)
            for other in left:
                other.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def _cannot_listen(settings: Settings, exc: OSError) -> NoReturn:
    if isinstance(exc, socket.gaierror):
        stop(
            f"{PROCESS}: cannot listen on {settings.host}:{settings.port}: HOST does not "
            f"resolve ({exc.strerror}). HOST and PORT say where the server listens."
        )
    why = _BIND_ERRORS.get(exc.errno or 0)
    if why is None:
        raise exc
    stop(
        f"{PROCESS}: cannot listen on {settings.host}:{settings.port} ({why}). Stop the "
        "process that holds it, or choose another port: PORT=9000 (HOST and PORT say "
        "where the server listens)."
    )


def _port_free(settings: Settings) -> None:
    """Before the processes start: a taken port is one line, not one per process."""
    with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            _cannot_listen(settings, exc)


def check_connections(settings: Settings) -> None:
    """Before any process starts: all SERVER_PROCESSES' connections must fit the database."""
    try:
        warning = asyncio.run(_preflight(settings))
    except (DatabaseSetupError, HostTablesMissing) as exc:
        stop(f"{PROCESS}: {exc}", status=2)
    except (OSError, asyncpg.PostgresError) as exc:
        # Unreachable now: each process's start will find out for itself, and retry.
        log.warning("could not check the database's connection limit: %s", exc)
        return
    if warning:
        log.warning("%s", warning)


async def _preflight(settings: Settings) -> str | None:
    needed = connections_needed(settings, settings.server_processes, settings.db_pool_max, 1)
    what = (
        f"{settings.server_processes} server process(es) with DB_POOL_MAX={settings.db_pool_max}"
        " and a LISTEN connection each"
    )
    warning = await check_budget(settings, needed, what, "SERVER_PROCESSES or DB_POOL_MAX")
    if settings.server_processes > 1:
        pool = await open_pool(settings, PROCESS, min_size=1, max_size=1, migrations=False)
        await pool.close()
    return warning


def _process_settings(settings: Settings, index: int) -> Settings:
    """Each process's own metrics port (SERVER_METRICS_PORT + index; 0 stays 0: any free)."""
    port = settings.server_metrics_port
    if port is None or port == 0:
        return settings
    return msgspec.structs.replace(settings, server_metrics_port=port + index)


def supervise(settings: Settings) -> int:
    _port_free(settings)
    # fork: no event loop, pool or socket exists yet to be shared by mistake.
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(
            target=run,
            args=(_process_settings(settings, i),),
            kwargs={"shared_port": True, "announce": i == 0},
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
    ended = wait([c.sentinel for c in children])
    if not signalled:
        stop_all(signal.SIGTERM)
    for child in children:
        child.join()
    if signalled and all(c.exitcode == 0 for c in children):
        return 0
    # The status of the process that ended first (2: a setup problem, as with one process).
    first = next(c for c in children if c.sentinel in ended)
    return first.exitcode if first.exitcode is not None and first.exitcode > 0 else 1

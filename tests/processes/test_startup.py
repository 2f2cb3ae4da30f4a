"""Start-up as an operator sees it: PostgreSQL or Redis unreachable is retried for
STARTUP_WAIT_SECONDS with one line per try, then one line and exit 1 (no traceback); a database
that comes up during the wait is joined; a port already in use is one line naming it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from msgspec.structs import replace

from pmd_service.core.settings import Settings
from support.stack import WORKER, free_port, service_env
from tests.helpers import DatabaseRelay, direct, on_port
from tests.procs import ARQ_WORKER, CLI, SERVE, Proc, run


@pytest.mark.parametrize(
    ("argv", "down"),
    [(SERVE, "PostgreSQL"), (WORKER, "Redis"), ([*CLI, "stats"], "PostgreSQL")],
)
async def test_an_unreachable_service_is_retried_then_one_line_and_exit_1(
    settings: Settings, tmp_path: Path, argv: list[str], down: str
) -> None:
    nowhere = free_port()  # nothing listens there
    if down == "PostgreSQL":
        settings = direct(settings, on_port(settings.direct_url, nowhere))
    else:
        settings = replace(settings, redis_url=f"redis://127.0.0.1:{nowhere}/0")
    env = service_env(
        settings, tmp_path, LOG_FORMAT="json", STARTUP_WAIT_SECONDS="1.2", PORT=str(free_port())
    )
    code, proc = await run(argv, env)
    assert code == 1, proc.log()
    lines = [json.loads(line) for line in proc.lines]
    *tries, last = lines
    assert len(tries) >= 2, proc.log()  # 0.5 s, then 0.7 s: at least two tries before giving up
    for number, line in enumerate(tries, 1):
        assert line["level"] == "warning"
        assert f"{down} is unreachable" in line["msg"] and f"(try {number};" in line["msg"]
    assert last["level"] == "error"
    assert "STARTUP_WAIT_SECONDS" in last["msg"] and f"{down} is unreachable" in last["msg"]
    assert "exc" not in last and "Traceback" not in proc.log()


@contextlib.asynccontextmanager
async def late(target: str) -> AsyncIterator[DatabaseRelay]:
    """A database that comes up late: a port nobody listens on until `open()`."""
    relay = DatabaseRelay(target)
    try:
        yield relay
    finally:
        await relay.cut()


async def test_a_database_that_comes_up_during_the_wait_is_joined(
    settings: Settings, tmp_path: Path, redis_clean: None
) -> None:
    async with late(settings.direct_url) as db:
        port = free_port()
        env = service_env(
            direct(settings, on_port(settings.direct_url, db.port)),
            tmp_path,
            STARTUP_WAIT_SECONDS="120",
            PORT=str(port),
        )
        server = await Proc.start(SERVE, env, "server")
        try:
            await server.line(lambda s: "(try 2;" in s)  # refused twice, then it comes up
            await db.open()
            await server.line(lambda s: f"listening on http://127.0.0.1:{port}" in s)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/readyz") as resp,
            ):
                assert resp.status == 200
            assert "PostgreSQL and Redis answer (try " in server.log()
            assert await server.stop() == 0, server.log()
        finally:
            await server.kill()
    assert "Traceback" not in server.log()


async def test_the_arq_form_waits_for_the_database_too(
    settings: Settings, tmp_path: Path, redis_clean: None
) -> None:
    """`arq worker.WorkerSettings` has no start-up of the service's own before arq's Worker:
    its on_startup waits STARTUP_WAIT_SECONDS for PostgreSQL, as `python -m pmd_service
    worker` does."""
    async with late(settings.direct_url) as db:
        env = service_env(
            direct(settings, on_port(settings.direct_url, db.port)),
            tmp_path,
            STARTUP_WAIT_SECONDS="120",
            LOG_FORMAT="text",
        )
        worker = await Proc.start(ARQ_WORKER, env, "worker")
        try:
            await worker.line(lambda s: "(try 2;" in s)  # refused twice, then it comes up
            await db.open()
            await worker.line(lambda s: "worker ready" in s)
            assert await worker.stop() == 0, worker.log()
        finally:
            await worker.kill()
    assert "Traceback" not in worker.log()


async def test_a_port_in_use_is_one_line_naming_it(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for processes in ("1", "2"):
            env = service_env(settings, tmp_path, PORT=str(port), SERVER_PROCESSES=processes)
            code, proc = await run(SERVE, env)
            assert code == 1, proc.log()
            assert len(proc.lines) == 1, proc.log()
            assert f"cannot listen on 127.0.0.1:{port} (another process holds it)" in proc.lines[0]
            assert "PORT=9000" in proc.lines[0]


async def test_a_taken_server_metrics_port_is_one_line(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = service_env(settings, tmp_path, PORT=str(free_port()), SERVER_METRICS_PORT=str(port))
        code, proc = await run(SERVE, env)
    assert code == 1, proc.log()
    assert len(proc.lines) == 1, proc.log()
    assert f"the server's metrics port 127.0.0.1:{port} is unavailable" in proc.lines[0]


async def test_a_second_signal_during_shutdown_changes_nothing(
    settings: Settings, tmp_path: Path, redis_clean: None
) -> None:
    """Ctrl-C in `make run` reaches every process, then the dev supervisor sends SIGTERM: the
    server used to end in a traceback (aiohttp raised again in the middle of its shutdown)."""
    port = free_port()
    server = await Proc.start(SERVE, service_env(settings, tmp_path, PORT=str(port)), "server")
    try:
        await server.line(lambda s: "listening on" in s)
        # A keep-alive connection open makes the shutdown last long enough (aiohttp waits for
        # it) for the second signal to land in the middle of it.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
            server.proc.send_signal(signal.SIGINT)
            server.proc.send_signal(signal.SIGTERM)
            assert await server.wait() == 0, server.log()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        assert "Traceback" not in server.log() and "CRITICAL" not in server.log()
    finally:
        await server.kill()


async def test_a_database_that_refuses_is_not_waited_for(
    settings: Settings, tmp_path: Path
) -> None:
    """A missing database (or a wrong password) will not fix itself: one line at once."""
    url = urlunsplit(urlsplit(settings.direct_url)._replace(path="/no_such_database_here"))
    env = service_env(direct(settings, url), tmp_path, STARTUP_WAIT_SECONDS="600")
    code, proc = await run([*CLI, "stats"], env, within=60)
    assert code == 1, proc.log()
    assert len(proc.lines) == 1, proc.log()
    assert "pmd: PostgreSQL refused the connection" in proc.lines[0]
    assert "no_such_database_here" in proc.lines[0]

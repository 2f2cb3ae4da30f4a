"""Every way of running the server and worker refuses dev mode on servers no dev stack marked as
its own (dev mode shows every user's mail and signs in with the checkout's secret): one line,
exit status 2, nothing written; on the servers it marked, dev mode runs as before."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

from pmd_service.core.settings import SERVER_URLS, Settings, mark_dev_servers
from support.stack import free_port, service_env, start_server, stop
from tests.helpers import on_port
from tests.procs import ARQ_WORKER, CLI, run

ENTRY_POINTS = {
    "server.py": [sys.executable, "server.py"],
    "serve": [*CLI, "serve"],
    "worker": [*CLI, "worker"],
    "arq worker.WorkerSettings": ARQ_WORKER,
}


def dev_env(settings: Settings, data: Path, **extra: str) -> dict[str, str]:
    """A server's or worker's environment on the test's servers, in dev mode."""
    extra = {"PMD_DEV": "1", "PORT": str(free_port()), "STARTUP_WAIT_SECONDS": "0", **extra}
    return service_env(settings, data, **extra)


def marked_dev_env(settings: Settings, data: Path, **extra: str) -> dict[str, str]:
    """dev_env, on servers a dev stack under `data` marked as its own."""
    env = dev_env(settings, data, **extra)
    mark_dev_servers(data, *(env[name] for name in SERVER_URLS if env.get(name)))
    return env


def named(line: str) -> set[str]:
    return {name for name in SERVER_URLS if name in line.replace(",", " ").split()}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
async def test_dev_mode_refuses_servers_no_dev_stack_marked(
    settings: Settings, tmp_path: Path, entry: str
) -> None:
    data = tmp_path / "data"
    env = dev_env(settings, data)
    code, proc = await run(ENTRY_POINTS[entry], env, within=30)
    assert code == 2, proc.log()
    assert len(proc.lines) == 1 and "Traceback" not in proc.log(), proc.log()
    assert named(proc.lines[0]) == {name for name in SERVER_URLS if env.get(name)}, proc.log()
    assert not data.exists()  # no secret, no embedded server, nothing


async def test_one_server_no_dev_stack_marked_is_enough_to_refuse(
    settings: Settings, tmp_path: Path
) -> None:
    """The marked database and Redis, and a direct URL to the same database by another way."""
    data = tmp_path / "data"
    env = marked_dev_env(settings, data)
    marks = (data / "dev-servers").read_text()
    env["DATABASE_DIRECT_URL"] = on_port(settings.direct_url, free_port())
    code, proc = await run(ENTRY_POINTS["serve"], env, within=30)
    assert code == 2, proc.log()
    assert len(proc.lines) == 1 and named(proc.lines[0]) == {"DATABASE_DIRECT_URL"}, proc.log()
    assert [p.name for p in data.iterdir()] == ["dev-servers"]
    assert (data / "dev-servers").read_text() == marks


async def test_redis_no_dev_stack_made_is_refused_before_an_embedded_database_starts(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = dev_env(Settings.from_env(_nowhere()), data)
    del env["DATABASE_URL"], env["JWT_SECRET_KEY"]
    code, proc = await run(ENTRY_POINTS["worker"], env, within=30)
    assert code == 2, proc.log()
    assert len(proc.lines) == 1 and named(proc.lines[0]) == {"REDIS_URL"}, proc.log()
    assert not data.exists()


def _nowhere() -> dict[str, str]:
    port = str(free_port())
    return {
        "DATABASE_URL": f"postgresql://pmd@127.0.0.1:{port}/pmd",
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "JWT_SECRET_KEY": "k" * 32,
    }


async def test_without_a_secret_the_checkouts_is_never_used_for_a_set_database_url(
    settings: Settings, tmp_path: Path
) -> None:
    """Even on servers the dev stack marked: the secret of the checkout signs for none."""
    data = tmp_path / "data"
    env = marked_dev_env(settings, data)
    del env["JWT_SECRET_KEY"]
    for argv in (ENTRY_POINTS["serve"], [*CLI, "token", "Op1"]):
        code, proc = await run(argv, env, within=30)
        assert code == 2, proc.log()
        assert len(proc.lines) == 1 and "JWT_SECRET_KEY" in proc.lines[0], proc.log()
        assert not (data / "dev-jwt-secret").exists()


async def test_dev_mode_runs_on_the_servers_its_dev_stack_marked(
    settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = marked_dev_env(settings, data, PORT=str(port), STARTUP_WAIT_SECONDS="10")
    with (tmp_path / "server.log").open("ab") as log:
        server = await asyncio.to_thread(start_server, env, port, log, ENTRY_POINTS["serve"])
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/dev/mail") as mailbox,
        ):
            assert mailbox.status == 200  # dev mode's own page: dev mode is on
    finally:
        await asyncio.to_thread(stop, server)

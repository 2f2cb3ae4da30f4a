"""SERVER_PROCESSES: several `python server.py` processes on one port (SO_REUSEPORT), each with
its own LISTEN connection, started and stopped by one parent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import aiohttp
import asyncpg

from pmd_service.core.settings import Settings
from pmd_service.web.serve import KEEPALIVE_SECONDS
from support.seeding import Factory
from support.sse import SSE, Stream
from support.stack import free_port, listener_pids, service_env, start_server
from tests.helpers import eventually
from tests.procs import HEALTHZ, answered


def start(
    settings: Settings, directory: Path, port: int, processes: int
) -> subprocess.Popen[bytes]:
    env = service_env(settings, directory, SERVER_PROCESSES=str(processes))
    with (directory / "server.log").open("ab") as log:
        return start_server(env, port, log)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


async def test_processes_share_the_port_and_each_listens(
    settings: Settings, factory: Factory, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    port = free_port()
    parent = await asyncio.to_thread(start, settings, tmp_path, port, 2)
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        return resp.status == 200 and len(await listener_pids(pool)) == 2
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(ready, 30, lambda: (tmp_path / "server.log").read_text())
            assert len(children(parent.pid)) == 2
            # Each process says where it listens; one of them where the API reference is.
            reference = f"API reference at http://127.0.0.1:{port}/api/pmd/docs"

            async def announced() -> bool:
                log = (tmp_path / "server.log").read_text()
                return log.count("listening on") == 2 and reference in log

            await eventually(announced, 30, lambda: (tmp_path / "server.log").read_text())
            assert (tmp_path / "server.log").read_text().count("API reference at") == 1
            # A stream opened through the shared port gets what a commit announces, whichever
            # process accepted it.
            user = await factory.user()
            async with http.get(f"http://127.0.0.1:{port}{SSE}", headers=user.auth) as resp:
                assert resp.status == 200
                stream = Stream(resp)
                await stream.opening()
                bdr = await pool.fetchval(
                    "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count)"
                    " VALUES ($1, '{1}', 1) RETURNING id::text",
                    user.id,
                )
                update = await stream.next(10)
                assert update is not None and update.event == "bdr_update"
                assert update.json()["id"] == bdr
        pids = children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(10) == 0
        assert all(gone(pid) for pid in pids)  # ended, and reaped by the parent
        await eventually(lambda: _no_listeners(pool), 30, "no listeners left behind")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


async def _no_listeners(pool: asyncpg.Pool) -> bool:
    return not await listener_pids(pool)


async def test_one_process_dying_stops_the_group(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A process that dies takes the others down and the parent exits 1, so whatever supervises
    the server restarts it whole rather than running on with fewer processes than configured."""
    port = free_port()
    parent = await asyncio.to_thread(start, settings, tmp_path, port, 2)
    try:

        async def both_listening() -> bool:
            return len(await listener_pids(pool)) == 2

        await eventually(both_listening, 30, lambda: (tmp_path / "server.log").read_text())
        os.kill(children(parent.pid)[0], signal.SIGKILL)
        assert parent.wait(15) == 1
        await eventually(lambda: _no_listeners(pool), 30, "no listeners left behind")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


async def test_idle_connections_outlast_the_proxies_idle_timeout(
    settings: Settings, tmp_path: Path
) -> None:
    """A proxy reuses an idle upstream connection for up to its own idle timeout (Caddy's
    reverse_proxy 2 min, nginx's upstream 60 s): a server that closes it sooner races the
    proxy's next request, which the client gets as a 502. A connection idle 16 s between two
    requests is still answered: HEADER_TIMEOUT_SECONDS (15 s) bounds a head once its first
    byte came, not the wait for it (a new connection's first head is bounded from its start:
    test_connection_bounds.py)."""
    assert KEEPALIVE_SECONDS > 120
    port = free_port()
    server = await asyncio.to_thread(start, settings, tmp_path, port, 1)
    try:
        used = await asyncio.open_connection("127.0.0.1", port)
        assert await answered(used, HEALTHZ, 10) == b"HTTP/1.1 200 OK"
        await asyncio.sleep(16)
        assert await answered(used, HEALTHZ, 10) == b"HTTP/1.1 200 OK"
        used[1].close()
    finally:
        server.terminate()
        server.wait(15)

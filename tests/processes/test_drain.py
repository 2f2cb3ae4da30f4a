"""A rolling deploy's one step, with real server processes: SIGTERM to one server while a
request is in flight and a stream is open. The server stops accepting, tells the stream to
reconnect, finishes the request and exits 0; the client resumes on another server with
Last-Event-ID and misses nothing committed meanwhile."""

from __future__ import annotations

import asyncio
import functools
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg

from pmd_service.core.settings import Settings
from support.seeding import Factory
from support.sse import SSE, open_stream
from support.stack import answers, free_port, service_env
from tests.helpers import CHECKOUT, event_ids, eventually, ids

SQL_NEW_BDR = (
    "INSERT INTO batch_download_requests (user_id, post_ids, artwork_count)"
    " VALUES ($1, '{1}', 1) RETURNING id"
)


def start(settings: Settings, directory: Path, port: int, name: str) -> subprocess.Popen[bytes]:
    env = service_env(
        settings,
        HOST="127.0.0.1",
        PORT=str(port),
        PMD_DATA_DIR=str(directory),
        # Ample, so that a loaded machine cannot turn "finishes" into "cut off".
        SHUTDOWN_GRACE_SECONDS="20",
    )
    with (directory / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "server.py"], cwd=CHECKOUT, env=env, stdout=log, stderr=log
        )


async def test_sigterm_drains_and_the_stream_resumes_elsewhere(
    settings: Settings, factory: Factory, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    port_a, port_b = free_port(), free_port()
    a = start(settings, tmp_path, port_a, "a")
    b = start(settings, tmp_path, port_b, "b")
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    logs = lambda: (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()  # noqa: E731
    try:
        owner = await factory.user()
        post = await factory.post(owner)
        async with aiohttp.ClientSession() as http:
            for url in (url_a, url_b):
                ready = functools.partial(asyncio.to_thread, answers, f"{url}/readyz")
                await eventually(ready, 30, logs)
            async with open_stream(http, f"{url_a}{SSE}", owner.auth) as stream:
                await stream.opening()
                await pool.fetchval(SQL_NEW_BDR, owner.id)
                seen = ids(await stream.updates(1))

                # A request in flight: its UPDATE waits on a row lock this test holds.
                blocker = await asyncpg.connect(settings.direct_url)
                locked = blocker.transaction()
                await locked.start()
                await blocker.execute("SELECT 1 FROM posts WHERE id = $1 FOR UPDATE", post.id)
                action = asyncio.create_task(
                    http.post(
                        f"{url_a}/api/pmd/action",
                        json={"action": "hide", "post_ids": [post.id]},
                        headers=owner.auth,
                    )
                )
                await eventually(lambda: _waiting_on_a_lock(pool), 20, logs)

                a.send_signal(signal.SIGTERM)
                farewell = await stream.ended()
                assert [m.event for m in farewell] == [None, "reconnect"], farewell
                assert farewell[0].retry is not None
                assert farewell[1].json()["reason"] == "shutdown"
                last_seen = stream.last_event_id
                assert last_seen is not None and int(last_seen) == seen[-1]

            # Not accepting any more, while it still finishes the request in flight.
            try:
                async with http.get(f"{url_a}/healthz") as resp:
                    accepted = resp.status
            except aiohttp.ClientConnectionError:
                accepted = None
            assert accepted is None
            assert a.poll() is None

            # Events committed while the client is between servers.
            for _ in range(3):
                await pool.fetchval(SQL_NEW_BDR, owner.id)
            await locked.commit()
            await blocker.close()
            resp = await action
            assert resp.status == 200, await resp.text()
            resp.release()
            assert await asyncio.to_thread(a.wait, 30) == 0

            # The reconnect, elsewhere, from where it left off.
            async with open_stream(
                http, f"{url_b}{SSE}", {**owner.auth, "Last-Event-ID": last_seen}
            ) as resumed:
                opening = await resumed.opening()
                assert opening[-1].json() == {"resumed": True}
                missed = await event_ids(pool, owner, after=int(last_seen))
                assert len(missed) >= 3
                assert ids(opening) == missed
        assert "Traceback" not in (tmp_path / "a.log").read_text()
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 30)


async def _waiting_on_a_lock(pool: asyncpg.Pool) -> bool:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pmd-server'"
        " AND wait_event_type = 'Lock' AND datname = current_database()"
    )
    return n > 0

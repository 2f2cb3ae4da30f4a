"""A database that refuses connections, and pools that fit: against a real PostgreSQL whose
limit is a role's CONNECTION LIMIT (the same SQLSTATE 53300 "too many connections" a full
max_connections gives), on a role of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import ANY
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.api.keys import DB_POOL
from pmd_service.core.db import (
    Budget,
    DatabaseRefusing,
    DatabaseSetupError,
    PoolTimeout,
    create_pool,
    database_refusal,
    judge_budget,
)
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from pmd_service.web.outage import OUTAGES, OutageLog
from support.seeding import Factory
from support.sse import SSE, open_stream
from support.stack import WORKER, service_env
from tests.helpers import CHECKOUT, assert_problem, direct, eventually
from tests.procs import ARQ_WORKER, run

TEXT_INFO = re.compile(r"^\S+ \S+ (INFO|DEBUG) ")

Client = TestClient[Any, Any]


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@dataclass
class Role:
    name: str
    url: str
    admin: asyncpg.Pool
    held: list[asyncpg.Connection]

    async def fill(self, target: int) -> None:
        """Hold `target` connections (what other clients would hold); slots of sessions just
        terminated come free a moment after they leave pg_stat_activity."""

        async def taken() -> bool:
            with contextlib.suppress(asyncpg.TooManyConnectionsError):
                self.held.append(await asyncpg.connect(self.url))
            return len(self.held) == target

        await eventually(taken, 10, f"{target} connections of {self.name} held")

    async def release(self) -> None:
        for conn in self.held:
            await conn.close()
        self.held.clear()

    async def terminate(self, application_name: str) -> None:
        """End the role's connections of one kind, as a database restart would."""
        await self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = $1 AND application_name = $2",
            self.name,
            application_name,
        )

    async def count(self, application_name: str) -> int:
        n: int = await self.admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND application_name = $2",
            self.name,
            application_name,
        )
        return n


@pytest.fixture
async def limited_role(
    database_url: str, pool: asyncpg.Pool
) -> AsyncIterator[Callable[[int], Any]]:
    made: list[Role] = []
    dbname = urlsplit(database_url).path.lstrip("/")

    async def make(limit: int) -> Role:
        name = f"pmd_lim_{uuid.uuid4().hex[:8]}"
        await pool.execute(f"CREATE ROLE {name} LOGIN CONNECTION LIMIT {limit}")
        for sql in (
            f'GRANT CONNECT ON DATABASE "{dbname}" TO {name}',
            f"GRANT USAGE ON SCHEMA pmd, public TO {name}",
            f"GRANT ALL ON ALL TABLES IN SCHEMA pmd, public TO {name}",
            f"GRANT ALL ON ALL SEQUENCES IN SCHEMA pmd, public TO {name}",
        ):
            await pool.execute(sql)
        role = Role(name, as_user(database_url, name), pool, [])
        made.append(role)
        return role

    yield make
    for role in made:
        await role.release()
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role.name
        )
        await pool.execute(f"DROP OWNED BY {role.name}")
        await pool.execute(f"DROP ROLE {role.name}")


class HeldWindows(OutageLog):
    """An outage log whose summing-up windows end when the test ends them, not after a time:
    which refusals share a window then depends on no machine's speed."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def _schedule(self, service: str) -> None:
        self.open.append(service)

    def end_windows(self) -> None:
        ending, self.open = self.open, []
        for service in ending:
            self._flush(service)


async def start(
    aiohttp_client: AiohttpClient, settings: Settings, outages: OutageLog | None = None
) -> Client:
    app = create_app(settings)
    if outages is not None:
        app[OUTAGES] = outages
    return await aiohttp_client(app)


async def test_a_full_database_is_503_with_retry_after_and_one_log_line(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    factory: Factory,
    redis_clean: None,
    limited_role: Callable[[int], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    role: Role = await limited_role(3)  # the pool (2) and the LISTEN connection
    # No minimum: the pool would otherwise reconnect by itself as soon as a slot is free.
    settings = direct(settings, role.url, db_pool_min=0, db_pool_max=2)
    # One window for the six refusals below, ended once they are in: one line, one sum.
    outages = HeldWindows()
    client = await start(aiohttp_client, settings, outages)
    owner = await factory.user()
    post = await factory.post(owner)
    assert (await client.get("/api/pmd/posts", headers=owner.auth)).status == 200

    # The database restarts its sessions and others take every slot meanwhile.
    await role.terminate("pmd-server")
    await eventually(lambda: _none_left(role), 10, "the pool's connections ended")
    await role.fill(2)  # with the LISTEN connection, all three
    caplog.set_level(logging.INFO)
    caplog.clear()
    answers = [
        await client.get("/api/pmd/posts", headers=owner.auth),
        await client.post(
            "/api/pmd/action", json={"action": "hide", "post_ids": [post.id]}, headers=owner.auth
        ),
        await client.post("/api/pmd/bdr", json={"post_ids": [post.id]}, headers=owner.auth),
        await client.get(SSE, headers=owner.auth),
        await client.get(f"/api/pmd/bdr/{uuid.uuid4()}", headers=owner.auth),
        await client.delete(f"/api/pmd/bdr/{uuid.uuid4()}", headers=owner.auth),  # a cancel
    ]
    for resp in answers:
        body = await assert_problem(resp, 503)
        assert body["type"].endswith("database-unavailable")
        assert int(resp.headers["Retry-After"]) > 0
    outage_lines = [r for r in caplog.records if r.name == "pmd_service.web.outage"]
    assert len(outage_lines) == 1
    assert "TooManyConnectionsError" in outage_lines[0].getMessage()
    # No traceback for any of them, and nothing logged as an unhandled error.
    assert not [r for r in caplog.records if r.exc_info or "unhandled" in r.getMessage()]

    caplog.clear()
    outages.end_windows()
    summaries = [r.args for r in caplog.records if r.name == "pmd_service.web.outage"]
    assert summaries == [("database", 5, ANY, ANY)]  # the five after the first, in one sum

    # Once the database takes connections again, so does the service (after a short pause:
    # a refused pool does not ask again at once).
    await role.release()

    async def served() -> bool:
        resp = await client.get("/api/pmd/posts", headers=owner.auth)
        return resp.status == 200

    await eventually(served, 10, "lists served again")


async def test_a_refused_pool_pauses_before_it_asks_again(
    settings: Settings, limited_role: Callable[[int], Any]
) -> None:
    """After a refusal, acquires with no idle connection fail at once (DatabaseRefusing)
    instead of each making the full database fork a backend to refuse it again."""
    role: Role = await limited_role(1)
    await role.fill(1)
    pool = await create_pool(role.url, "pmd-server", min_size=0, max_size=2, refused_pause=30)
    try:
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await pool.fetchval("SELECT 1")
        with pytest.raises(DatabaseRefusing, match="TooManyConnectionsError"):
            await pool.fetchval("SELECT 1")
        assert database_refusal(DatabaseRefusing("x"))
    finally:
        await pool.close()


async def _none_left(role: Role) -> bool:
    return await role.count("pmd-server") == 0


async def test_an_exhausted_pool_is_503_after_the_acquire_timeout(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    settings = msgspec.structs.replace(
        settings, db_pool_min=1, db_pool_max=1, db_acquire_timeout=0.3
    )
    client = await start(aiohttp_client, settings)
    owner = await factory.user()
    async with client.app[DB_POOL].acquire():  # a request that holds the only connection
        resp = await client.get("/api/pmd/posts", headers=owner.auth)
        body = await assert_problem(resp, 503)
        assert "database" in body["detail"] and resp.headers["Retry-After"]
    assert (await client.get("/api/pmd/posts", headers=owner.auth)).status == 200


async def test_the_acquire_timeout_bounds_the_wait_for_a_free_slot_not_opening_a_connection(
    database_url: str,
) -> None:
    # Every slot free, none connected: the acquire opens a connection, which takes longer
    # than this timeout (it took seconds in an opening flood) and is not a slot to wait for.
    pool = await create_pool(
        database_url, "pmd-test", min_size=0, max_size=2, acquire_timeout=0.000_001
    )
    try:
        assert await pool.fetchval("SELECT 1") == 1
        async with pool.acquire(), pool.acquire():
            with pytest.raises(PoolTimeout):  # both slots held: that is what the bound is for
                await pool.fetchval("SELECT 1")
        assert await pool.fetchval("SELECT 2") == 2
    finally:
        await pool.close()


async def test_unreachable_redis_is_503_not_500(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, pool: asyncpg.Pool
) -> None:
    from support.stack import free_port

    settings = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await start(aiohttp_client, settings)
    owner = await factory.user()
    await factory.post(owner)
    resp = await client.post("/api/pmd/bdr/sse-ticket", headers=owner.auth)
    await assert_problem(resp, 503, "tickets_unavailable")
    assert resp.headers["Retry-After"]
    # What is queued in Redis is kept in the database meanwhile: the sweep enqueues it later.
    resp = await client.post("/api/pmd/exports", json={}, headers=owner.auth)
    assert resp.status == 202, await resp.text()


async def test_streams_hold_no_pooled_connection(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    factory: Factory,
    redis_clean: None,
    limited_role: Callable[[int], Any],
) -> None:
    """Twelve open streams on a pool of two: lists still get a connection at once, and the
    database sees no more than the two pooled sessions (plus the one listener)."""
    role: Role = await limited_role(3)
    settings = direct(settings, role.url, db_pool_min=1, db_pool_max=2, db_acquire_timeout=2.0)
    client = await start(aiohttp_client, settings)
    users = [await factory.user() for _ in range(3)]
    async with aiohttp.ClientSession() as http:
        url = str(client.make_url(SSE))
        streams = []
        for i in range(12):
            streams.append(open_stream(http, url, users[i % 3].auth))
        opened = [await s.__aenter__() for s in streams]
        try:
            for stream in opened:
                await stream.opening()
            lists = await asyncio.gather(
                *[client.get("/api/pmd/posts", headers=u.auth) for u in users * 2]
            )
            assert [r.status for r in lists] == [200] * 6
            assert await role.count("pmd-server") <= 2
            assert await role.count("pmd-sse-listener") == 1
        finally:
            for s in streams:
                await s.__aexit__(None, None, None)


def budget(**kw: Any) -> Budget:
    values = dict(
        max_connections=100, reserved=3, role_limit=-1, superuser=False, in_use=1, role_in_use=1
    )
    return Budget(**(values | kw))


def test_a_configuration_that_can_never_fit_is_refused() -> None:
    # The measured failure: 7 processes x (a pool of 20 + a listener) on max_connections 100.
    with pytest.raises(DatabaseSetupError, match=r"need up to 147 database connections.* 97"):
        judge_budget(budget(), 7 * 21, "7 server processes")
    with pytest.raises(DatabaseSetupError, match="CONNECTION LIMIT 10"):
        judge_budget(budget(role_limit=10), 11, "a worker")
    assert judge_budget(budget(), 97, "servers") is None
    # Fits, but not beside what others hold now (an old release mid-deploy): a warning only.
    warning = judge_budget(budget(in_use=41), 80, "servers")
    assert warning is not None and "only 57 are free" in warning
    # Not even a superuser's pools may count on the slots reserved for an administrator.
    with pytest.raises(DatabaseSetupError, match="allows 97"):
        judge_budget(budget(superuser=True, role_limit=5), 98, "servers")
    assert judge_budget(budget(superuser=True, role_limit=5), 97, "servers") is None


async def test_the_server_refuses_to_start_when_its_processes_cannot_fit(
    settings: Settings, tmp_path: Path, limited_role: Callable[[int], Any]
) -> None:
    role: Role = await limited_role(10)
    env = {
        **os.environ,
        "DATABASE_URL": role.url,
        "REDIS_URL": settings.redis_url,
        "JWT_SECRET_KEY": settings.jwt_secret_key,
        "PORT": "0",
        "SERVER_PROCESSES": "3",
        "DB_POOL_MAX": "5",
        "AUTO_MIGRATE": "false",
        "PMD_DATA_DIR": str(tmp_path),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "server.py"],
        cwd=CHECKOUT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "need up to 18 database connections" in lines[0]
    assert "CONNECTION LIMIT 10" in lines[0]


@pytest.mark.parametrize("argv", [WORKER, ARQ_WORKER], ids=["python -m", "arq"])
async def test_a_worker_whose_pool_cannot_fit_stops_with_one_line(
    settings: Settings, tmp_path: Path, limited_role: Callable[[int], Any], argv: list[str]
) -> None:
    """Both forms of the worker: a pool larger than the role may ever open is one line and
    exit status 2, not arq's traceback."""
    role: Role = await limited_role(4)
    plain = direct(settings, role.url)
    env = service_env(plain, tmp_path, WORKER_DB_POOL_MAX="8", LOG_FORMAT="text")
    code, proc = await run(argv, env, within=60)
    assert code == 2, proc.err
    # arq's own start-up lines (INFO) come first; the problem is one line, and the only one
    # above INFO.
    lines = [line for line in proc.err if line.strip() and not TEXT_INFO.match(line)]
    assert len(lines) == 1, proc.err
    assert "CONNECTION LIMIT 4" in lines[0] and "WORKER_DB_POOL_MAX" in lines[0], lines
    assert "Traceback" not in "\n".join(proc.err + proc.out)

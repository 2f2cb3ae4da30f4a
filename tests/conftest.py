"""Real PostgreSQL and Redis for every test: embedded by default, or TEST_DATABASE_URL /
TEST_REDIS_URL to use standalone servers (the suite then works in a database it creates and
drops, and flushes the Redis database it is given)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from harness.seaweed import Seaweed, create_bucket, new_bucket_name, running_seaweed
from pmd_service.core.db import create_pool
from pmd_service.core.migrate import apply_migrations
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from tests.factories import Factory
from tests.helpers import CHECKOUT, SECRET, TABLES, Mailbox, free_port, serving, with_database

# The host site's tables as its own migrations make them (Makapix Club, api/alembic/versions).
HOST_SCHEMA_SQL = Path(__file__).with_name("host_schema.sql")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        from pmd_service.dev.embedded import start_postgres

        admin_url = start_postgres(CHECKOUT / ".data" / "test-pg")
    name = f"pmd_test_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            # The service sets its search path on every connection it opens; this default lets
            # the tests' own connections name the service's tables unqualified too.
            await conn.execute(f'ALTER DATABASE "{name}" SET search_path = pmd, public')
        finally:
            await conn.close()
        conn = await asyncpg.connect(with_database(admin_url, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    yield with_database(admin_url, name)
    asyncio.run(drop())


@pytest.fixture
async def host_url(database_url: str) -> AsyncIterator[str]:
    """A fresh database holding the host's tables, and nothing of the service's yet."""
    name = f"pmd_host_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(database_url, name)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(HOST_SCHEMA_SQL.read_text("utf-8"))
        finally:
            await conn.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    from pmd_service.dev.embedded import EmbeddedRedis

    redis = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield redis.start()
    redis.stop()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[Seaweed]:
    """A real S3-compatible server (SeaweedFS), started once for the run when a test asks."""
    with running_seaweed() as weed:
        yield weed


@pytest.fixture(scope="session")
def s3_bucket(seaweed: Seaweed) -> str:
    """One bucket per test run; each test works under a prefix of its own (`s3_prefix`)."""
    name = new_bucket_name()
    asyncio.run(create_bucket(seaweed, name))
    return name


@pytest.fixture
def s3_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    vault = tmp_path / "vault"
    vault.mkdir()
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path,
        vault_path=vault,
        bdr_path=tmp_path / "bdr",
        jwt_secret_key=SECRET,
        base_url="http://pmd.test",
        auto_migrate=False,
        metrics_port=0,  # tests that want the worker's metrics port ask for a free one
    )


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, "pmd-test", min_size=1, max_size=10)
    await pool.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    yield pool
    await pool.close()


@pytest.fixture
async def redis_clean(redis_url: str) -> None:
    from pmd_service.core.queue import create_redis

    redis = create_redis(redis_url)
    await redis.flushdb()
    await redis.aclose()


@pytest.fixture
def factory(pool: asyncpg.Pool, settings: Settings) -> Factory:
    return Factory(pool, settings)


@pytest.fixture
def app(settings: Settings, pool: asyncpg.Pool, redis_clean: None) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> TestClient[Any, Any]:
    return await aiohttp_client(app)


# --- worker, SMTP ----------------------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on loopback, collecting what it receives."""
    with serving(Mailbox("127.0.0.1", free_port())) as box:
        yield box


@pytest.fixture
async def worker_ctx(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[dict[str, Any]]:
    """The context arq gives cron jobs, for calling sweep/cleanup directly."""
    from pmd_service.jobs.context import job_context

    async with job_context(settings) as ctx:
        yield ctx

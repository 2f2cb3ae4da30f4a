"""Real PostgreSQL and Redis for every test; the service connects as a least-privilege role."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from pmd_service.core.db import create_pool
from pmd_service.core.migrate import apply_migrations, create_host_tables
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support import tools
from support.mailbox import Mailbox
from support.seaweed import Seaweed, running_seaweed
from support.seeding import Factory
from support.stack import connected, create_database, drop_database, with_database
from tests.helpers import (
    CHECKOUT,
    EMPTY_TABLES,
    SECRET,
    Serve,
    Served,
    ServedLikeServerPy,
    SmallApp,
    as_role,
    bucket_on,
    grant_role,
    scratch_database,
)

HOST_SCHEMA_SQL = Path(__file__).with_name("host_schema.sql")

pytest_plugins = ["tests.page_stack", "tests.prerequisites", "tests.skip_guard", "tests.parallel"]


# As root, each session's temporary folders under a root of its own (see _own_temp_root).
SESSION_ROOTS = Path(tempfile.gettempdir()) / "pmd-pytest-roots"
SESSION_ROOTS_KEPT_SECONDS = 86_400.0


def _own_temp_root() -> None:
    """The embedded PostgreSQL runs as another user when root starts it, who must traverse the
    test's folders; pytest closes its one shared folder to others as each session begins, which
    cut off another session's server mid-start."""
    SESSION_ROOTS.mkdir(exist_ok=True)
    for old in SESSION_ROOTS.iterdir():
        if time.time() - old.stat().st_mtime > SESSION_ROOTS_KEPT_SECONDS:
            shutil.rmtree(old, ignore_errors=True)
    os.environ["PYTEST_DEBUG_TEMPROOT"] = tempfile.mkdtemp(dir=SESSION_ROOTS)


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() == 0 and not hasattr(config, "workerinput"):
        _own_temp_root()
    pooler = os.environ.get("TEST_DATABASE_POOLER", "none")
    if pooler not in ("none", "pgbouncer"):
        raise pytest.UsageError(f"TEST_DATABASE_POOLER={pooler}: none or pgbouncer")
    if pooler == "pgbouncer" and (why := tools.missing(["pgbouncer"])) is not None:
        raise pytest.UsageError(f"TEST_DATABASE_POOLER=pgbouncer, but {why}")


@dataclass(frozen=True)
class TestDatabase:
    admin_url: str  # a superuser: the host's side and the tests' checks
    service_url: str  # the service's least-privilege role, made by `grants`
    role: str
    password: str


@pytest.fixture(scope="session")
def test_database() -> Iterator[TestDatabase]:
    """The suite's database: host tables by the admin, the service's migrations by its role."""
    server_url = os.environ.get("TEST_DATABASE_URL")
    if not server_url:
        from pmd_service.dev.embedded import start_postgres

        server_url = start_postgres(CHECKOUT / ".data" / "test-pg")
    suffix = uuid.uuid4().hex[:10]
    name, role, password = f"pmd_test_{suffix}", f"pmd_svc_{suffix}", uuid.uuid4().hex
    admin_url = with_database(server_url, name)
    db = TestDatabase(admin_url, as_role(admin_url, role, password), role, password)

    async def create() -> None:
        await create_database(server_url, name)
        async with connected(admin_url) as conn:
            await create_host_tables(conn)
            await grant_role(conn, role, password)
        async with connected(db.service_url) as conn:
            await apply_migrations(conn)

    asyncio.run(create())
    yield db
    asyncio.run(drop_database(server_url, name, role))


@pytest.fixture(scope="session")
def database_url(test_database: TestDatabase) -> str:
    return test_database.service_url


@pytest.fixture(scope="session")
def pooler_url(database_url: str) -> Iterator[str | None]:
    if os.environ.get("TEST_DATABASE_POOLER", "none") == "none":
        yield None
        return
    from support.pgbouncer import running_pgbouncer

    # Fewer server connections than clients, so clients share server sessions, as in production.
    with running_pgbouncer(database_url, server_connections=20) as bouncer:
        yield bouncer.url


@pytest.fixture(scope="session")
def admin_database_url(test_database: TestDatabase) -> str:
    return test_database.admin_url


empty_db = scratch_database("pmd_empty", search_path=False)


@pytest.fixture
async def host_url(empty_db: str) -> str:
    """A fresh database holding the host's tables only (an admin URL)."""
    async with connected(empty_db) as conn:
        await conn.execute(HOST_SCHEMA_SQL.read_text("utf-8"))
    return empty_db


@pytest.fixture
async def host_role_url(host_url: str, test_database: TestDatabase) -> str:
    async with connected(host_url) as conn:
        await grant_role(conn, test_database.role, test_database.password)
    return as_role(host_url, test_database.role, test_database.password)


def worker_redis_url(url: str, worker: int) -> str:
    """TEST_REDIS_URL for xdist worker `worker`: its database number minus the worker's."""
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0)
    if worker > number:
        raise pytest.UsageError(
            f"TEST_REDIS_URL names database {number}: too low for worker {worker} of pytest-xdist "
            "(each worker uses the number minus its own); name database 15"
        )
    return urlunsplit(parts._replace(path=f"/{number - worker}"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield worker_redis_url(
            url, int(worker_id.removeprefix("gw")) if worker_id != "master" else 0
        )
        return
    from pmd_service.dev.embedded import EmbeddedRedis

    redis = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield redis.start()
    redis.stop()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[Seaweed]:
    with running_seaweed() as weed:
        yield weed


@pytest.fixture(scope="session")
def s3_bucket(seaweed: Seaweed) -> str:
    """One bucket per run (each takes volumes of their own); each test has its `s3_prefix`."""
    return bucket_on(seaweed)


@pytest.fixture
def s3_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(database_url: str, pooler_url: str | None, redis_url: str, tmp_path: Path) -> Settings:
    vault = tmp_path / "vault"
    vault.mkdir()
    return Settings(
        database_url=pooler_url or database_url,
        database_direct_url=database_url if pooler_url else None,
        database_pooler="pgbouncer" if pooler_url else "none",
        redis_url=redis_url,
        data_dir=tmp_path,
        vault_path=vault,
        zip_path=tmp_path / "bdr",
        jwt_secret_key=SECRET,
        base_url="http://pmd.test",
        auto_migrate=False,
        metrics_port=0,  # tests that want the worker's metrics port ask for a free one
    )


@pytest.fixture
async def pool(admin_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(admin_database_url, "pmd-test", min_size=1, max_size=10)
    await pool.execute(EMPTY_TABLES)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_clean(redis_url: str) -> None:
    from pmd_service.core.redis_client import create_redis

    async with create_redis(redis_url) as redis:
        await redis.flushdb()


@pytest.fixture
def factory(pool: asyncpg.Pool, settings: Settings) -> Factory:
    return Factory(pool, settings)


@pytest.fixture
def app(settings: Settings, pool: asyncpg.Pool, redis_clean: None) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> TestClient[Any, Any]:
    return await aiohttp_client(app)


@pytest.fixture
def small(settings: Settings) -> Settings:
    """Export parts of a few KiB, and an hour's cooldown after a full export."""
    sizes = {"export_min_part_bytes": 1024, "export_part_bytes": 64 * 1024}
    return msgspec.structs.replace(settings, export_cooldown_seconds=3600, **sizes)


@pytest.fixture
async def ex_client(
    aiohttp_client: AiohttpClient, small: Settings, pool: asyncpg.Pool, redis_clean: None
) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(small))


@pytest.fixture
def small_app(
    aiohttp_client: AiohttpClient, small: Settings, pool: asyncpg.Pool, redis_clean: None
) -> SmallApp:
    """`small` with the changes the test names, and a client of an app on them."""

    async def made(**changes: Any) -> tuple[Settings, TestClient[Any, Any]]:
        changed = msgspec.structs.replace(small, **changes)
        return changed, await aiohttp_client(create_app(changed))

    return made


@pytest.fixture
async def mail_client(small_app: SmallApp, smtp: Mailbox) -> tuple[Settings, TestClient[Any, Any]]:
    """`small`, its emails sent to `smtp`, and a client of an app on it."""
    return await small_app(smtp_host=smtp.host, smtp_port=smtp.port)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session without a total timeout: streams stay open as long as a test reads."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as s:
        yield s


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    with Mailbox() as box:
        yield box


@pytest.fixture
async def worker_ctx(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[dict[str, Any]]:
    """The context arq gives cron jobs, for calling sweep/cleanup directly."""
    from pmd_service.jobs.context import job_context

    async with job_context(settings) as ctx:
        yield ctx


@pytest.fixture
async def serve(settings: Settings, pool: asyncpg.Pool, redis_clean: None) -> AsyncIterator[Serve]:
    servers: list[TestServer] = []

    async def start(**overrides: Any) -> TestServer:
        server = ServedLikeServerPy(create_app(msgspec.structs.replace(settings, **overrides)))
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def served(serve: Serve, aiohttp_client: AiohttpClient) -> Served:
    server = await serve()
    client: TestClient[Any, Any] = await aiohttp_client(server)
    return server, client

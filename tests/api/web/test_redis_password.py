"""The queue's Redis with a password (`requirepass`, as every shipped compose file runs it): the
server's client, the worker's arq pool and the start-up check all log in with the password
REDIS_URL carries, percent-encoded as a URL needs it. arq's `RedisSettings.from_dsn` passed it on
still encoded, so a password holding `/`, `@`, `:` or `%` (base64 makes such) was refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.exceptions
from arq.connections import create_pool
from msgspec.structs import replace

from pmd_service.core.redis_client import create_redis, redis_settings, worker_redis_settings
from pmd_service.core.settings import Settings
from pmd_service.core.startup import services_reachable
from support.redis import RedisServer

PASSWORD = "q/u@e:u%e+p=w"  # what `openssl rand -base64` gives, and URL delimiters


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-locked"), password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_url_carries_the_password_percent_encoded(locked: RedisServer) -> None:
    assert PASSWORD not in locked.url and "%2F" in locked.url
    assert redis_settings(locked.url).password == PASSWORD


async def test_the_servers_client_logs_in(locked: RedisServer) -> None:
    client = create_redis(locked.url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


async def test_the_workers_arq_pool_logs_in(locked: RedisServer) -> None:
    pool = await create_pool(worker_redis_settings(locked.url))
    try:
        assert await pool.ping()
    finally:
        await pool.aclose()


async def test_without_the_password_it_is_refused(locked: RedisServer) -> None:
    bare = locked.url.replace(locked.url.split("//")[1].split("@")[0] + "@", "")
    client = create_redis(bare)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await client.ping()
    finally:
        await client.aclose()


async def test_the_start_up_check_logs_in(locked: RedisServer, settings: Settings) -> None:
    await services_reachable(replace(settings, redis_url=locked.url), "pmd", wait=0.0)

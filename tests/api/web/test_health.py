from __future__ import annotations

from pathlib import Path

import asyncpg
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service import __version__
from pmd_service.api.keys import DB_POOL
from pmd_service.core.settings import Settings
from pmd_service.dev.embedded import EmbeddedRedis
from pmd_service.web.app import create_app
from tests.helpers import assert_problem


async def test_healthz(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    client = await aiohttp_client(create_app(settings))
    resp = await client.get("/healthz")
    # The release it runs, as the package's metadata and the OpenAPI document name it.
    assert resp.status == 200 and (await resp.json()) == {"status": "ok", "version": __version__}
    doc = await (await client.get("/openapi.json")).json()
    assert doc["info"]["version"] == __version__


async def test_readyz_follows_redis(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "own-redis")
    url = redis.start()
    try:
        client = await aiohttp_client(create_app(replace(settings, redis_url=url)))
        resp = await client.get("/readyz")
        assert resp.status == 200
        assert (await resp.json())["checks"] == {"database": "ok", "redis": "ok"}

        redis.stop()
        resp = await client.get("/readyz")
        body = await assert_problem(resp, 503)
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("unreachable")
        assert "redis" in body["detail"]

        redis.start()  # and it recovers without a restart
        resp = await client.get("/readyz")
        assert resp.status == 200
    finally:
        redis.stop()


async def test_readyz_stays_ready_with_every_pooled_connection_busy(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    """A server whose pool is all in use is loaded, not unready: the balancer keeps it."""
    app = create_app(replace(settings, db_pool_min=1, db_pool_max=2))
    client = await aiohttp_client(app)
    service_pool = app[DB_POOL]
    held = [await service_pool.acquire() for _ in range(2)]
    try:
        resp = await client.get("/readyz")
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["checks"]["database"].startswith("busy")
    finally:
        for conn in held:
            await service_pool.release(conn)
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["checks"]["database"] == "ok"

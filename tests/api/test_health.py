from __future__ import annotations

from pathlib import Path

import asyncpg
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service import __version__
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

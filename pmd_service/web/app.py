"""The aiohttp application factory: nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .. import __version__
from ..db import create_pool
from ..hostcheck import warn_if_host_lacks
from ..logs import quiet_malformed_requests
from ..migrate import migrate
from ..posts.host_cache import create_host_cache
from ..public_ids import PublicIds
from ..queue import create_redis
from ..settings import Settings
from . import bdr as bdr_api
from . import health, pages
from . import posts as posts_api
from . import sse as sse_api
from .auth import auth_middleware
from .cors import setup_cors
from .keys import (
    DB_POOL,
    HOST_CACHE,
    METRICS,
    OPENAPI_DOC,
    PUBLIC_IDS,
    REDIS,
    SELF_AUTHENTICATED,
    SETTINGS,
)
from .metrics import Metrics, internal_metrics_ctx, metrics_handler, metrics_middleware
from .openapi import HEALTH_OPERATIONS, Operation, build_document, openapi_handler
from .problems import problem_middleware
from .request_ids import request_id_middleware


async def _db_pool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url is not None, "resolve embedded services before create_app"
    pool = await create_pool(
        settings.database_url,
        "pmd-server",
        search_path=settings.search_path,
        min_size=2,
        max_size=20,
    )
    async with pool.acquire() as conn:
        if settings.auto_migrate:
            await migrate(conn, settings)
        await warn_if_host_lacks(conn, settings.host_schema)
    app[DB_POOL] = pool
    yield
    await pool.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.redis_url is not None, "resolve embedded services before create_app"
    redis = create_redis(settings.redis_url)
    app[REDIS] = redis
    yield
    await redis.aclose()


async def _host_cache_ctx(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].host_cache_redis_url
    cache = create_host_cache(url) if url else None
    app[HOST_CACHE] = cache
    yield
    if cache is not None:
        await cache.aclose()


def create_app(settings: Settings) -> web.Application:
    quiet_malformed_requests()
    app = web.Application(
        # Outermost first: metrics see the final status of every answer, problems included.
        middlewares=[
            request_id_middleware,
            metrics_middleware,
            problem_middleware,
            auth_middleware,
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[PUBLIC_IDS] = PublicIds(settings.sqids_alphabet)
    app[SELF_AUTHENTICATED] = set()
    app[METRICS] = Metrics(app)
    app.cleanup_ctx.append(_db_pool_ctx)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_host_cache_ctx)
    app.cleanup_ctx.append(sse_api.hub_ctx)
    app.cleanup_ctx.append(internal_metrics_ctx)
    metrics_public = settings.server_metrics_port is None

    operations: list[Operation] = [
        *(op for op in HEALTH_OPERATIONS if op.path != "/metrics" or metrics_public),
        *posts_api.OPERATIONS,
        *sse_api.OPERATIONS,
        *bdr_api.OPERATIONS,
    ]
    health.setup(app)
    posts_api.setup(app)
    sse_api.setup(app)  # before the BDR routes: /api/pmd/bdr/{id} would match /bdr/sse
    bdr_api.setup(app)
    app.router.add_get("/openapi.json", openapi_handler, name="openapi")
    if metrics_public:
        app.router.add_get("/metrics", metrics_handler, name="metrics")
    pages.setup(app)
    if settings.cors_origins:
        setup_cors(app, settings.cors_origins)
    app[OPENAPI_DOC] = build_document(operations, __version__)
    return app

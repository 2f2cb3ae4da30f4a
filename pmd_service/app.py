"""The aiohttp application factory: nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from . import __version__, health
from .auth import auth_middleware
from .bdr import api as bdr_api
from .db import create_pool
from .errors import problem_middleware
from .keys import DB_POOL, METRICS, OPENAPI_DOC, PUBLIC_IDS, REDIS, SELF_AUTHENTICATED, SETTINGS
from .metrics import Metrics, metrics_handler, metrics_middleware
from .migrate import apply_migrations
from .openapi import HEALTH_OPERATIONS, Operation, build_document, openapi_handler
from .posts import api as posts_api
from .public_ids import PublicIds
from .queue import create_redis
from .request_ids import request_id_middleware
from .settings import Settings
from .sse import api as sse_api
from .web import pages


async def _db_pool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url is not None, "resolve embedded services before create_app"
    pool = await create_pool(settings.database_url, "pmd-server", min_size=2, max_size=20)
    if settings.auto_migrate:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
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


def create_app(settings: Settings) -> web.Application:
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
    app.cleanup_ctx.append(sse_api.hub_ctx)

    operations: list[Operation] = [
        *HEALTH_OPERATIONS,
        *posts_api.OPERATIONS,
        *sse_api.OPERATIONS,
        *bdr_api.OPERATIONS,
    ]
    health.setup(app)
    posts_api.setup(app)
    sse_api.setup(app)  # before the BDR routes: /api/pmd/bdr/{id} would match /bdr/sse
    bdr_api.setup(app)
    app.router.add_get("/openapi.json", openapi_handler, name="openapi")
    app.router.add_get("/metrics", metrics_handler, name="metrics")
    pages.setup(app)
    app[OPENAPI_DOC] = build_document(operations, __version__)
    return app

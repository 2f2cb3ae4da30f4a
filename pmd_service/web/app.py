"""The aiohttp application factory: nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .. import __version__
from ..api import ticket_endpoint
from ..api.download_slots import ProxySlots
from ..api.keys import (
    COLLECTORS,
    DB_POOL,
    OPENAPI_DOC,
    PRESENCE,
    PROXY_SLOTS,
    REDIS,
    ROUTE_ENDPOINTS,
    SETTINGS,
    TICKET_REDEMPTIONS,
    ZIP_FILES,
)
from ..api.request_ids import echo_on_prepare, request_id_middleware
from ..api.routing import register
from ..api.ticket_redemptions import Redemptions
from ..core.logs import quiet_malformed_requests
from ..core.opening import SERVER_APPLICATION, open_pool
from ..core.presence import Presence
from ..core.redis_client import create_redis
from ..core.settings import Settings
from ..features.registry import ENDPOINTS, EVENT_KINDS, LIFETIMES, TICKETS
from ..host.hostcheck import warn_if_host_lacks
from ..sse import endpoints as sse
from ..sse import lifetime as sse_hub
from ..sse.endpoints import SSE_HUB, TEND_HEAP
from ..storage.zip_files import ZipFiles
from . import health, openapi, pages, reference, request_metrics
from .connections import CONNECTION_COUNTS, ConnectionCounts, head_deadline_middleware
from .cors import setup_cors
from .outage import OUTAGES, OutageLog
from .problem_middleware import problem_middleware
from .prometheus import METRICS, Metrics
from .request_metrics import DownloadCollector, internal_metrics_ctx, metrics_middleware

# The Server header of every answer, naming no version an attacker could use.
SERVER_NAME = "pmd-service"


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


async def _db_pool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[DB_POOL] = pool = await open_pool(
        settings,
        SERVER_APPLICATION,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        then=lambda conn: warn_if_host_lacks(conn, settings.host_schema),
    )
    yield
    await pool.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    app[REDIS] = redis = create_redis(app[SETTINGS].redis_url)
    app[TICKET_REDEMPTIONS] = redemptions = Redemptions(redis)
    app[PRESENCE] = presence = Presence(redis)
    yield
    await redemptions.stop()
    await presence.close()
    await redis.aclose()


def create_app(settings: Settings, *, tend_heap: bool = False) -> web.Application:
    """`tend_heap`: this app is its process's only one, and may tend its heap (sse/heap.py)."""
    quiet_malformed_requests()
    app = web.Application(
        # Outermost first: metrics see the final status of every answer, problems included.
        middlewares=[
            head_deadline_middleware,
            request_id_middleware,
            metrics_middleware,
            sse.opening_gate_middleware,
            problem_middleware,
        ],
        client_max_size=settings.max_body_bytes,
        # A filter of 64 tags of 64 characters, percent-encoded, reaches the app's checks.
        handler_args={"max_line_size": 64 * 1024},
    )
    app[SETTINGS] = settings
    app[TEND_HEAP] = tend_heap
    app.on_response_prepare.extend((_server_header, echo_on_prepare))
    app[CONNECTION_COUNTS] = counts = ConnectionCounts()
    app[METRICS] = metrics = Metrics(lambda: app.get(SSE_HUB), counts)
    app[COLLECTORS] = metrics.registry
    app[OUTAGES] = OutageLog()
    app[ZIP_FILES] = ZipFiles(settings, streams=True)
    app[PROXY_SLOTS] = ProxySlots(settings.zip_proxy_max_downloads, settings.zip_proxy_max_per_user)
    metrics.registry.register(DownloadCollector(app[ZIP_FILES], app[PROXY_SLOTS]))
    # The features' own lifetimes after the pool and Redis open and before they close.
    lifetimes = (_db_pool_ctx, _redis_ctx, sse_hub.hub_ctx, *LIFETIMES, internal_metrics_ctx)
    app.cleanup_ctx.extend(lifetimes)
    register(
        app,
        (
            *health.ENDPOINTS,
            *openapi.ENDPOINTS,
            *((request_metrics.PUBLIC_ENDPOINT,) if settings.server_metrics_port is None else ()),
            sse.endpoint(EVENT_KINDS),
            ticket_endpoint.endpoint(TICKETS),
            *ENDPOINTS,
            *reference.ENDPOINTS,
        ),
    )
    sse_hub.setup(app, EVENT_KINDS)
    pages.setup(app)
    reference.setup(app)
    if settings.cors_origins:
        setup_cors(app, settings.cors_origins)
    app[OPENAPI_DOC] = openapi.build_document(app[ROUTE_ENDPOINTS].values(), __version__)
    return app

"""Prometheus metrics of the server process (the registry is prometheus.py): each request
recorded by a middleware, and /metrics served on the public port or an internal one."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler
from arq.constants import default_queue_name
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    generate_latest,
)

from .endpoint import Auth, Endpoint
from .keys import METRICS, METRICS_ADDRESS, REDIS, SETTINGS

log = logging.getLogger(__name__)


def _route(request: web.Request) -> str:
    # The route template, never the raw path: ids in paths would explode the label set.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route(request)
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - start)


async def _render(app: web.Application) -> web.Response:
    metrics = app[METRICS]
    try:
        metrics.hub.queue_depth = await app[REDIS].zcard(default_queue_name)
    except Exception:  # Redis down: report what we can; /readyz says why
        metrics.hub.queue_depth = None
    return web.Response(
        body=generate_latest(metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


async def metrics_handler(request: web.Request) -> web.Response:
    return await _render(request.app)


# On the public port only when SERVER_METRICS_PORT is unset (see internal_metrics_ctx).
PUBLIC_ENDPOINT = Endpoint(
    "get", "/metrics", metrics_handler, "metrics", "Prometheus metrics of this server process",
    "operations", auth=Auth.PUBLIC, response_media="text/plain",
    ok_description="Prometheus text exposition format",
)  # fmt: skip


class MetricsPortError(RuntimeError):
    """SERVER_METRICS_PORT is taken: the server stops with this line."""


async def internal_metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """/metrics on a port of its own (SERVER_METRICS_PORT), kept off the public one: each
    scrape reads Redis, and route counts and open streams are not for everyone to see."""
    settings = app[SETTINGS]
    port = settings.server_metrics_port
    if port is None:
        yield
        return

    async def scrape(request: web.Request) -> web.Response:
        return await _render(app)

    internal = web.Application()
    internal.router.add_get("/metrics", scrape)
    runner = web.AppRunner(internal, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise MetricsPortError(
            f"the server's metrics port {settings.host}:{port} is unavailable "
            f"({exc.strerror}); give each server process its own SERVER_METRICS_PORT"
        ) from exc
    app[METRICS_ADDRESS] = runner.addresses[0]
    log.info("server metrics at http://%s:%d/metrics", *runner.addresses[0][:2])
    yield
    await runner.cleanup()

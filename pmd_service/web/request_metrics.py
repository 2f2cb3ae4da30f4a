"""Each request recorded by a middleware, and /metrics served on the public or an internal port."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler
from arq.constants import default_queue_name
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..api.declaration import Auth, Endpoint
from ..api.keys import COUNTED_STATUS, REDIS, SETTINGS
from .prometheus import METRICS

if TYPE_CHECKING:
    from ..api.download_slots import ProxySlots
    from ..storage.zip_files import ZipFiles

log = logging.getLogger(__name__)


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
        status = request.get(COUNTED_STATUS, status)
        # The route template, never the raw path: ids in paths would explode the label set.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - start)


class DownloadCollector(Collector):
    """The object store as this process's own calls found it, and the proxied downloads."""

    def __init__(self, files: ZipFiles, slots: ProxySlots) -> None:
        self.files = files
        self.slots = slots

    def collect(self) -> Iterator[Metric]:
        health = self.files.health
        if self.files.bucket is not None:
            yield GaugeMetricFamily(
                "pmd_object_store_failing",
                "1 while the last call to the object store failed or timed out (STORE_TIMEOUT_SECONDS)",
                value=health.failing_since is not None,
            )
            yield CounterMetricFamily(
                "pmd_object_store_calls", "Calls to the object store", value=health.calls
            )
            yield CounterMetricFamily(
                "pmd_object_store_failures",
                "Calls to the object store that failed or timed out (body reads included)",
                value=health.failures,
            )
        yield GaugeMetricFamily(
            "pmd_proxy_downloads",
            "Downloads streaming through this process (proxy mode)",
            value=self.slots.active,
        )
        refused = CounterMetricFamily(
            "pmd_proxy_downloads_refused",
            "Proxied downloads refused by a cap: user (429) or server (503)",
            labels=["cap"],
        )
        for cap in ("user", "server"):
            refused.add_metric([cap], self.slots.refused[cap])
        yield refused


async def metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    try:
        metrics.hub.queue_depth = await request.app[REDIS].zcard(default_queue_name)
    except Exception:  # Redis down: report what we can; /readyz says why
        metrics.hub.queue_depth = None
    return web.Response(
        body=generate_latest(metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


# On the public port only when SERVER_METRICS_PORT is unset (see internal_metrics_ctx).
PUBLIC_ENDPOINT = Endpoint(
    "get",
    "/metrics",
    metrics_handler,
    "metrics",
    "Prometheus metrics of this server process",
    "operations",
    auth=Auth.PUBLIC,
    response_media="text/plain",
    ok_description="Prometheus text exposition format",
)


class MetricsPortError(RuntimeError):
    """SERVER_METRICS_PORT is taken: the server stops with this line."""


async def internal_metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """/metrics on a port of its own (SERVER_METRICS_PORT), kept off the public one."""
    settings = app[SETTINGS]
    port = settings.server_metrics_port
    if port is None:
        yield
        return
    internal = web.Application()
    # The public app's registry and Redis, which the handler reads as on the public port.
    internal[METRICS] = app[METRICS]
    internal[REDIS] = app[REDIS]
    internal.router.add_get("/metrics", metrics_handler)
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


METRICS_ADDRESS: web.AppKey[Any] = web.AppKey("metrics_address")

"""Prometheus metrics of a worker process, scraped from its own port (METRICS_PORT).

Scraped, not pushed: each worker serves `/metrics` (prometheus-client's HTTP server, on a
thread) for as long as it runs, so Prometheus sees each replica as a target and notices when one
is gone. One registry per worker (no global state), so tests can read its values.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .zipbuild import BuildResult

log = logging.getLogger(__name__)

# How a claimed run ended: the BDR's new status, or "retry" (released for a later attempt).
OUTCOMES = ("ready", "failed", "cancelled", "retry")


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "bdr_processing_duration_seconds",
            "Time of one claimed run of process_bdr, from its claim to its outcome",
            ["status"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
        )
        self.file_size = Histogram(
            "bdr_file_size_bytes",
            "Size of each published ZIP",
            registry=self.registry,
            buckets=tuple(float(64 * 1024 * 4**i) for i in range(9)),  # 64 KiB … 4 GiB
        )
        self.artworks = Histogram(
            "bdr_artworks_count",
            "Artworks in each published ZIP",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 96, 128),
        )
        self.status = Counter(
            "bdr_status",
            "Claimed runs of process_bdr by how they ended",
            ["status"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:  # every series present from the start, at 0
            self.status.labels(outcome)
            self.duration.labels(outcome)

    def finished(self, outcome: str, seconds: float, result: BuildResult | None = None) -> None:
        self.status.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)
        if result is not None:
            self.file_size.observe(result.size)
            self.artworks.observe(len(result.added))


class MetricsServer:
    """prometheus-client's HTTP server for one registry, stopped with the worker."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        try:
            self._server: WSGIServer
            self._thread: threading.Thread
            self._server, self._thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise RuntimeError(
                f"the worker's metrics port {host}:{port} is unavailable ({exc.strerror}); "
                "give each worker on a host its own METRICS_PORT, or 0 to turn it off"
            ) from exc
        self.port: int = self._server.server_port
        log.info("worker metrics at http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

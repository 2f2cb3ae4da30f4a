"""Prometheus metrics of a worker process, served on its own port (METRICS_PORT): a taken
default port gives way to a free one, a taken port the operator set stops the worker."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

if TYPE_CHECKING:
    from ..zipbuild.build import BuildResult

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9108

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
        # A rule run on a schedule that stopped working must show, not only in its own row.
        self.scheduled_runs = Counter(
            "pmd_scheduled_runs",
            "Runs of owners' scheduled rules (cleanup policies) by the worker, by how they ended",
            ["kind", "status"],
            registry=self.registry,
        )

    def finished(self, outcome: str, seconds: float, result: BuildResult | None = None) -> None:
        self.status.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)
        if result is not None:
            self.file_size.observe(result.size)
            self.artworks.observe(len(result.added))


class MetricsPortError(RuntimeError):
    """The METRICS_PORT the operator set is taken: the worker stops with this line."""


class MetricsServer:
    """prometheus-client's HTTP server for one registry, stopped with the worker."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, host, registry)
        self.port: int = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def metrics_server(
    registry: CollectorRegistry, host: str, port: int | None
) -> MetricsServer | None:
    """The worker's metrics server on METRICS_PORT (`port`; None: unset, 0: off)."""
    if port == 0:
        return None
    try:
        server = MetricsServer(registry, host, DEFAULT_METRICS_PORT if port is None else port)
    except OSError as exc:
        if port is not None:
            raise MetricsPortError(
                f"the worker's metrics port {host}:{port} (METRICS_PORT) is unavailable "
                f"({exc.strerror}); give each worker on a host its own METRICS_PORT, "
                "leave it unset to take any free port, or set 0 to turn metrics off"
            ) from exc
        server = MetricsServer(registry, host, 0)
        log.warning(
            "worker metrics: the default port %s:%d is unavailable (%s; another worker on this "
            "host?), serving on http://%s:%d/metrics instead; set METRICS_PORT for a fixed one",
            host,
            DEFAULT_METRICS_PORT,
            exc.strerror,
            host,
            server.port,
        )
        return server
    log.info("worker metrics at http://%s:%d/metrics", host, server.port)
    return server

"""The server process's Prometheus registry, one per app, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..sse.hub import Hub
    from .connections import ConnectionCounts


class _ProcessCollector(Collector):
    def __init__(self, hub: Callable[[], Hub | None], counts: ConnectionCounts) -> None:
        self.hub = hub
        self.counts = counts
        self.queue_depth: int | None = None

    def collect(self) -> Iterator[Metric]:
        hub = self.hub()
        if hub is not None:
            yield GaugeMetricFamily(
                "pmd_sse_subscribers",
                "Open SSE streams in this process",
                value=hub.subscriber_count,
            )
            yield CounterMetricFamily(
                "pmd_sse_events_sent",
                "Event frames (every kind) queued to SSE streams",
                value=hub.frames_queued,
            )
            yield CounterMetricFamily(
                "pmd_sse_listen_reconnects",
                "Reconnects of the LISTEN connection",
                value=hub.reconnects,
            )
            yield CounterMetricFamily(
                "pmd_sse_streams_revoked",
                "SSE streams ended because the account lost its access (ban, role, deactivation)",
                value=hub.revoked,
            )
            ended = CounterMetricFamily(
                "pmd_sse_streams_ended",
                "SSE streams ended, by why: gone (the client left), timeout (token expired), "
                "revoked, overflow (fell behind), shutdown",
                labels=["reason"],
            )
            for reason, count in sorted(hub.ended_by.items()):
                ended.add_metric([reason], count)
            yield ended
            heap = hub.heap
            if heap is not None:
                yield GaugeMetricFamily(
                    "pmd_gc_pause_max_seconds",
                    "The longest garbage-collector pause since start-up (heap frozen after it)",
                    value=heap.pause_max,
                )
                yield GaugeMetricFamily(
                    "pmd_gc_pause_max_cpu_seconds",
                    "CPU time of that longest pause (less than its wall time on a busy machine)",
                    value=heap.pause_max_cpu,
                )
                yield GaugeMetricFamily(
                    "pmd_gc_pause_max_generation",
                    "The generation that longest pause collected (2: a full collection)",
                    value=heap.pause_max_generation,
                )
                for name, doc, value in (
                    ("pmd_gc_pauses", "Garbage-collector pauses", heap.pauses),
                    ("pmd_gc_freezes", "Heap freezes after a wave of new streams", heap.freezes),
                    ("pmd_gc_reclaims", "Full collections of the unfrozen heap", heap.reclaims),
                    ("pmd_gc_pause_seconds", "Time spent in garbage-collector pauses",
                     heap.pause_seconds),
                ):  # fmt: skip
                    yield CounterMetricFamily(name, doc, value=value)
        if self.queue_depth is not None:
            yield GaugeMetricFamily(
                "pmd_arq_queue_depth", "Jobs waiting in the arq queue", value=self.queue_depth
            )
        counts = self.counts
        yield GaugeMetricFamily(
            "pmd_connections_open",
            "HTTP connections this process holds, streams included",
            value=counts.open,
        )
        yield CounterMetricFamily(
            "pmd_connections_refused",
            "Connections past MAX_CONNECTIONS, answered 503 and closed",
            value=counts.refused,
        )
        yield CounterMetricFamily(
            "pmd_connections_heads_late",
            "Connections closed for a request head not in within HEADER_TIMEOUT_SECONDS",
            value=counts.heads_late,
        )


class Metrics:
    """`hub` gives the process's SSE hub once it runs (None before), read at scrape time."""

    def __init__(self, hub: Callable[[], Hub | None], connections: ConnectionCounts) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pmd_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pmd_http_request_duration_seconds",
            "Time to produce the response (for SSE: the stream's lifetime)",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.hub = _ProcessCollector(hub, connections)
        self.registry.register(self.hub)


METRICS: web.AppKey[Metrics] = web.AppKey("metrics")

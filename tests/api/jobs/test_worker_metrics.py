"""The worker's own Prometheus metrics: recorded by process_bdr, served on METRICS_PORT."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from prometheus_client import CollectorRegistry

from pmd_service.core.settings import Settings
from pmd_service.jobs import context
from support.seeding import Factory
from support.stack import WORKER, free_port, service_env
from tests.helpers import request_bdr, run_worker
from tests.procs import Proc, run

Client = TestClient[Any, Any]


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} not in the worker's registry"
    return value


async def test_process_bdr_records_outcomes_sizes_and_counts_served_on_its_port(
    client: Client, factory: Factory, settings: Settings, pool: asyncpg.Pool
) -> None:
    user, posts = await factory.owner_and_posts(3)
    ready = await request_bdr(client, user, [p.id for p in posts])
    gone = await factory.post(user)
    await request_bdr(client, user, [gone.id])
    await pool.execute("UPDATE posts SET deleted_by_user = true WHERE id = $1", gone.id)

    port = free_port()
    seen: dict[str, Any] = {}

    async def scrape_then_shutdown(ctx: dict[str, Any]) -> None:
        # Scraped the way Prometheus does it, while the worker still runs.
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            seen["status"] = resp.status
            seen["text"] = await resp.text()
        seen["registry"] = context.state(ctx).metrics.registry
        await context.shutdown(ctx)

    await run_worker(
        replace(settings, metrics_port=port, host="127.0.0.1"), on_shutdown=scrape_then_shutdown
    )

    size = await pool.fetchval(
        "SELECT file_size_bytes FROM batch_download_requests WHERE id = $1::uuid", ready["id"]
    )
    registry: CollectorRegistry = seen["registry"]
    assert _value(registry, "bdr_status_total", status="ready") == 1
    assert _value(registry, "bdr_status_total", status="failed") == 1
    assert _value(registry, "bdr_status_total", status="cancelled") == 0
    assert _value(registry, "bdr_status_total", status="retry") == 0
    assert _value(registry, "bdr_processing_duration_seconds_count", status="ready") == 1
    assert _value(registry, "bdr_processing_duration_seconds_count", status="failed") == 1
    assert _value(registry, "bdr_processing_duration_seconds_sum", status="ready") > 0
    # Sizes and counts of published ZIPs only: the failed run made none.
    assert _value(registry, "bdr_file_size_bytes_count") == 1
    assert _value(registry, "bdr_file_size_bytes_sum") == size
    assert _value(registry, "bdr_artworks_count_count") == 1
    assert _value(registry, "bdr_artworks_count_sum") == 3
    assert _value(registry, "bdr_artworks_count_bucket", le="2.0") == 0
    assert _value(registry, "bdr_artworks_count_bucket", le="4.0") == 1

    assert seen["status"] == 200
    text: str = seen["text"]
    assert 'bdr_status_total{status="ready"} 1.0' in text
    assert f"bdr_file_size_bytes_sum {float(size)}" in text
    assert "# TYPE bdr_processing_duration_seconds histogram" in text


async def test_only_the_worker_serves_metrics_and_a_taken_port_is_a_clear_error(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # The ops CLI runs jobs through the same start-up beside a running worker: no port.
    ctx: dict[str, Any] = {}
    await context.startup(ctx, settings=replace(settings, metrics_port=free_port()))
    try:
        assert context.state(ctx).metrics_server is None
    finally:
        await context.shutdown(ctx)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = replace(settings, metrics_port=port, host="127.0.0.1")
        with pytest.raises(RuntimeError, match="METRICS_PORT"):
            await context.startup({}, settings=busy, serve_metrics=True)

    off: dict[str, Any] = {}
    await context.startup(off, settings=replace(settings, metrics_port=0), serve_metrics=True)
    try:
        assert context.state(off).metrics_server is None
    finally:
        await context.shutdown(off)


def test_metrics_port_setting() -> None:
    env = {
        "DATABASE_URL": "postgresql://db/x",
        "REDIS_URL": "redis://r",
        "JWT_SECRET_KEY": "k" * 40,
    }
    assert Settings.from_env(env).metrics_port is None  # 9108, or any free port if taken
    assert Settings.from_env(env | {"METRICS_PORT": "9108"}).metrics_port == 9108
    assert Settings.from_env(env | {"METRICS_PORT": "0"}).metrics_port == 0


async def test_two_workers_with_default_settings_both_run(
    settings: Settings, tmp_path: Path, redis_clean: None
) -> None:
    """METRICS_PORT unset: the first worker takes 9108 (unless something else holds it), the
    second says so in one line and serves on a free port; both run and both are scraped."""
    env = service_env(settings, tmp_path)
    del env["METRICS_PORT"]
    workers = [await Proc.start(WORKER, env, f"worker {i}") for i in (1, 2)]
    try:
        urls = []
        for worker in workers:
            ready = await worker.line(lambda s: "worker ready" in s)
            urls.append(ready.rsplit("metrics ", 1)[1])
        assert len(set(urls)) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
        async with aiohttp.ClientSession() as http:
            for url in urls:
                async with http.get(url) as resp:
                    assert resp.status == 200
                    assert "bdr_status_total" in await resp.text()
        fell_back = [
            line for w in workers for line in w.lines if "default port 127.0.0.1:9108" in line
        ]
        assert 1 <= len(fell_back) <= 2
        assert all("set METRICS_PORT for a fixed one" in line for line in fell_back)
        for worker in workers:
            assert await worker.stop() == 0, worker.log()
    finally:
        for worker in workers:
            await worker.kill()


async def test_a_metrics_port_the_operator_set_and_is_taken_stops_the_worker(
    settings: Settings, tmp_path: Path, redis_clean: None
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = service_env(settings, tmp_path, METRICS_PORT=str(port), LOG_FORMAT="json")
        code, worker = await run(WORKER, env)
    assert code == 1, worker.log()
    errors = [json.loads(line) for line in worker.lines if '"level": "error"' in line]
    assert len(errors) == 1, worker.log()
    assert f"metrics port 127.0.0.1:{port} (METRICS_PORT) is unavailable" in errors[0]["msg"]
    assert "exc" not in errors[0] and "Traceback" not in worker.log()

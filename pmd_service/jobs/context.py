"""The worker's shared resources, created in arq's on_startup and closed in on_shutdown."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
from obstore.store import S3Store

from ..core.db import check_budget, connections_needed
from ..core.objects import open_store
from ..core.opening import open_pool
from ..core.public_ids import PublicIds
from ..core.settings import Settings
from ..storage.zip_files import ZipFiles
from .worker_metrics import MetricsServer, WorkerMetrics, metrics_server


@dataclass
class WorkerState:
    settings: Settings
    pool: asyncpg.Pool
    public_ids: PublicIds
    zips: ZipFiles  # where ZIPs go: the ZIP_PATH folder or the ZIP_STORE bucket
    http: aiohttp.ClientSession | None = None  # only with ARTWORK_BASE_URL
    artwork_store: S3Store | None = None  # ARTWORK_STORE's bucket, when set
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    metrics_server: MetricsServer | None = None
    # Set while no BDR is being built here: an export's build waits on it (BDRs go first).
    bdrs_idle: threading.Event = field(default_factory=threading.Event)
    bdrs_building: int = 0
    export_slots: asyncio.Semaphore = field(init=False)  # EXPORT_CONCURRENCY parts at once

    def __post_init__(self) -> None:
        self.bdrs_idle.set()
        self.export_slots = asyncio.Semaphore(self.settings.export_concurrency)

    @contextmanager
    def building_bdr(self) -> Iterator[None]:
        self.bdrs_building += 1
        self.bdrs_idle.clear()
        try:
            yield
        finally:
            self.bdrs_building -= 1
            if not self.bdrs_building:
                self.bdrs_idle.set()


log = logging.getLogger(__name__)

STATE_KEY = "pmd"


def state(ctx: dict[str, Any]) -> WorkerState:
    value = ctx[STATE_KEY]
    assert isinstance(value, WorkerState)
    return value


async def startup(ctx: dict[str, Any], *, settings: Settings, serve_metrics: bool = False) -> None:
    """`serve_metrics`: the worker process serves METRICS_PORT; the ops CLI does not."""
    needed = connections_needed(settings, 1, settings.worker_db_pool_max, 0)
    warning = await check_budget(
        settings,
        needed,
        f"a worker with WORKER_DB_POOL_MAX={settings.worker_db_pool_max}",
        "WORKER_DB_POOL_MAX",
    )
    if warning:
        log.warning("%s", warning)
    pool = await open_pool(
        settings, "pmd-worker", min_size=settings.db_pool_min, max_size=settings.worker_db_pool_max
    )
    http = None
    if settings.artwork_base_url:
        connector = aiohttp.TCPConnector(limit=settings.artwork_fetch_concurrency * 2)
        http = aiohttp.ClientSession(connector=connector, raise_for_status=False)
    artworks = settings.artwork_bucket
    st = WorkerState(
        settings,
        pool,
        PublicIds(settings.sqids_alphabet),
        ZipFiles(settings),
        http,
        artwork_store=open_store(artworks, settings.s3_access) if artworks else None,
    )
    if serve_metrics:
        try:
            st.metrics_server = metrics_server(
                st.metrics.registry, settings.host, settings.metrics_port
            )
        except RuntimeError:
            await shutdown({STATE_KEY: st})
            raise
    ctx[STATE_KEY] = st


async def shutdown(ctx: dict[str, Any]) -> None:
    value = ctx.get(STATE_KEY)
    if isinstance(value, WorkerState):
        if value.metrics_server is not None:
            await asyncio.to_thread(value.metrics_server.close)
        if value.http is not None:
            await value.http.close()
        await value.pool.close()


@asynccontextmanager
async def job_context(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """The context arq gives a job, for running one outside the worker (ops CLI, tests)."""
    from ..core.redis_client import create_redis

    ctx: dict[str, Any] = {"redis": create_redis(settings.redis_url)}
    try:
        await startup(ctx, settings=settings)
        yield ctx
    finally:
        await shutdown(ctx)
        await ctx["redis"].aclose()

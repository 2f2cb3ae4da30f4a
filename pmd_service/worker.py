"""The arq worker, wired in one place: the jobs it runs, its options, and its two entry points.

`python -m pmd_service worker` (`main`, the supported form) waits for PostgreSQL and Redis, runs
the options below on `PmdWorker` and writes each log line once; `arq
pmd_service.worker.WorkerSettings` runs the same options under arq's own start-up. Importing
this module reads no setting, so that the tests can run `worker_options` with their own.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from arq.constants import default_queue_name
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import dev_servers
from .bdr.job import process_bdr
from .bdr.queue import JOB_NAME
from .core import job_codec, logs
from .core.redis_client import redis_settings
from .core.settings import Settings
from .core.startup import StartupError, load_settings, services_reachable, stop, wait_for_services
from .exports.job import process_export
from .exports.queue import EXPORT_JOB_NAME
from .jobs import context
from .jobs.arq_adapter import ArqOptions, PmdWorker
from .jobs.failures import MAX_ATTEMPTS
from .jobs.worker_metrics import MetricsPortError
from .upkeep.cleanup import daily_cleanup
from .upkeep.sweep import sweep

log = logging.getLogger(__name__)

PROCESS = "pmd-worker"

# arq's poll loop has no error handling, so one failed Redis call would end the worker process:
# each call retries with backoff instead, for about a minute.
# OSError too: redis-py retries a refused reconnect of a pooled connection only when the
# socket's own error (ConnectionRefusedError) is in the list, not just redis' ConnectionError.
REDIS_RETRIES = 40
REDIS_BACKOFF_CAP = 2.0

# Attempts are counted in the database row, which decides when a BDR fails (a sweep-enqueued
# run is a new arq job, so arq's own count restarts). arq's limit is the same number, so arq
# never runs one job more often than the row allows; a run past it is the sweep's to fail.
# An export runs as long as its parts take (hours for a large account): arq's timeout is only
# a backstop, and its try count is no limit either (a published part restarts the row's
# attempts, which decide; the sweep takes back what arq gives up on).
FUNCTIONS = [
    func(process_bdr, name=JOB_NAME, max_tries=MAX_ATTEMPTS, timeout=1800),
    func(process_export, name=EXPORT_JOB_NAME, max_tries=1000, timeout=24 * 3600),
]
CRON_JOBS = [
    cron(sweep, second={5}, run_at_startup=True, timeout=120),
    # Under the name every release has queued it by: a worker of either release runs the
    # other's during a rolling upgrade, and one run a day is enqueued between them.
    cron(
        daily_cleanup,
        name="cron:cleanup_expired_bdrs",
        hour={3},
        minute={17},
        second={0},
        timeout=1800,
    ),
]
HEALTH_CHECK_INTERVAL = 30
MAX_JOBS = 4
# arq polls its queue and starts at most MAX_JOBS jobs a poll, so the delay bounds both a
# request's wait and one worker's rate; a poll is one ZRANGEBYSCORE, skipped while every slot is
# busy (docs/benchmarks-details.md, "Measurements behind the code").
POLL_DELAY = 0.02
# On SIGTERM a running build gets this long; an interrupted one is taken over later.
JOB_COMPLETION_WAIT = 20


def worker_redis_settings(url: str) -> RedisSettings:
    settings = redis_settings(url)
    settings.retry = Retry(ExponentialBackoff(cap=REDIS_BACKOFF_CAP, base=0.1), REDIS_RETRIES)
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    return settings


async def _worker_startup(ctx: dict[str, Any], *, settings: Settings, wait: bool) -> None:
    logs.drop_foreign_handlers("arq")  # whoever ran the Worker: each of its lines once
    if wait:
        # `arq worker.WorkerSettings`: arq has connected to Redis (with its own retries);
        # PostgreSQL gets the STARTUP_WAIT_SECONDS that `python -m pmd_service worker` gives
        # both before it starts the Worker.
        try:
            await services_reachable(settings, PROCESS)
        except StartupError as exc:
            stop(str(exc))
    await context.worker_startup(ctx, settings=settings)
    server = context.state(ctx).metrics_server
    metrics = f"http://{settings.host}:{server.port}/metrics" if server else "off"
    log.info(
        "worker ready: queue %s, up to %d jobs at once, metrics %s",
        default_queue_name,
        MAX_JOBS,
        metrics,
    )


def on_startup(settings: Settings, *, wait: bool = False) -> Any:
    return partial(_worker_startup, settings=settings, wait=wait)


def worker_options(settings: Settings, *, wait_for_services: bool = False) -> dict[str, Any]:
    """The keyword arguments of arq's Worker, as WorkerSettings gives them.
    `wait_for_services`: wait for PostgreSQL and Redis in on_startup (the `arq` command's
    form, which has no start-up of the service's own before the Worker)."""
    return {
        "functions": FUNCTIONS,
        "cron_jobs": CRON_JOBS,
        "on_startup": on_startup(settings, wait=wait_for_services),
        "on_shutdown": context.shutdown,
        "redis_settings": worker_redis_settings(settings.redis_url),
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "max_jobs": MAX_JOBS,
        "poll_delay": POLL_DELAY,
        "job_completion_wait": JOB_COMPLETION_WAIT,
        # No job's result is kept, so its id is free at once to be enqueued again. Set on the
        # Worker, not each function: a job arq ends itself (its tries run out) keeps the
        # Worker's, an hour by default, and its row would wait for the sweep's fresh id.
        "keep_result": 0,
        # JSON, never pickle: nothing read from Redis runs code (core/job_codec.py). The
        # Worker's own pool, which the sweep enqueues with, gets them too.
        "job_serializer": job_codec.serialize,
        "job_deserializer": job_codec.deserialize,
    }


def __getattr__(name: str) -> Any:
    """`WorkerSettings`, made when the `arq` command asks for it: only then are the settings
    read, so that `main` (which reads them its own way, embedded servers in dev mode) and the
    tests import this module without a DATABASE_URL or REDIS_URL."""
    if name == "WorkerSettings":
        return ArqOptions(worker_options(load_settings(PROCESS), wait_for_services=True))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> int:
    """`python -m pmd_service worker`."""
    settings = load_settings(PROCESS, embedded=dev_servers)
    wait_for_services(settings, PROCESS)
    worker = PmdWorker(**worker_options(settings))
    try:
        worker.run()
    except MetricsPortError as exc:
        stop(f"{PROCESS}: {exc}")
    return 0

"""The arq worker, wired in one place: jobs, crons and options. Importing it reads no setting."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from arq import cron, func
from arq.constants import default_queue_name

from . import dev_servers
from .core import job_codec, logs
from .core.db import DatabaseSetupError
from .core.migrate import HostTablesMissing
from .core.redis_client import worker_redis_settings
from .core.settings import Settings
from .core.startup import StartupError, load_settings, services_reachable, stop, wait_for_services
from .features.registry import JOB_KINDS, SCHEDULES
from .jobs import context
from .jobs.arq_adapter import PmdWorker, arq_command_runs_pmd_worker, arq_lines_once
from .jobs.driver import job_function
from .jobs.worker_metrics import MetricsPortError
from .mail.language import check_at_start as check_email_copy
from .upkeep.cleanup import daily_cleanup
from .upkeep.sweep import sweep

log = logging.getLogger(__name__)

PROCESS = "pmd-worker"

FUNCTIONS = [
    func(
        job_function(kind),
        name=kind.queue.function,
        max_tries=kind.queue.max_tries,
        timeout=kind.queue.timeout,
    )
    for kind in JOB_KINDS
]
CRON_JOBS = [
    cron(sweep, second={5}, run_at_startup=True, timeout=120),
    # The name every release has queued it by, so a rolling upgrade enqueues one run a day.
    cron(
        daily_cleanup,
        name="cron:cleanup_expired_bdrs",
        hour={3},
        minute={17},
        second={0},
        timeout=1800,
    ),
    *(
        cron(
            s.run,
            name=s.name,
            hour=set(s.hour) if s.hour is not None else None,
            minute=set(s.minute) if s.minute is not None else None,
            second=set(s.second),
            run_at_startup=s.run_at_startup,
            timeout=s.timeout,
        )
        for s in SCHEDULES
    ),
]
MAX_JOBS = 4
# Bounds both a request's wait and one worker's rate (at most MAX_JOBS jobs a poll).
POLL_DELAY = 0.02
# On SIGTERM a running build gets this long; an interrupted one is taken over later.
JOB_COMPLETION_WAIT = 20


async def _worker_startup(ctx: dict[str, Any], *, settings: Settings, wait: bool) -> None:
    logs.drop_foreign_handlers()  # whoever ran the Worker: each of its lines once
    if wait:
        # The `arq` command connected to Redis itself; PostgreSQL gets STARTUP_WAIT_SECONDS.
        try:
            await services_reachable(settings, PROCESS)
        except StartupError as exc:
            stop(str(exc))
    try:
        await context.startup(ctx, settings=settings, serve_metrics=True)
    except (HostTablesMissing, DatabaseSetupError) as exc:
        stop(f"{PROCESS}: {exc}", status=2)  # a log line: one JSON object under LOG_FORMAT=json
    server = context.state(ctx).metrics_server
    metrics = f"http://{settings.host}:{server.port}/metrics" if server else "off"
    log.info(
        "worker ready: queue %s, up to %d jobs at once, metrics %s",
        default_queue_name,
        MAX_JOBS,
        metrics,
    )


def worker_options(settings: Settings, *, wait_for_services: bool = False) -> dict[str, Any]:
    """arq Worker's keyword arguments; `wait_for_services`: on_startup waits (the `arq` command)."""
    return {
        "functions": FUNCTIONS,
        "cron_jobs": CRON_JOBS,
        "on_startup": partial(_worker_startup, settings=settings, wait=wait_for_services),
        "on_shutdown": context.shutdown,
        "redis_settings": worker_redis_settings(settings.redis_url),
        "health_check_interval": 30,
        "max_jobs": MAX_JOBS,
        "poll_delay": POLL_DELAY,
        "job_completion_wait": JOB_COMPLETION_WAIT,
        # No result is kept, so a job's id is free at once to be enqueued again.
        "keep_result": 0,
        # JSON, never pickle: nothing read from Redis runs code.
        "job_serializer": job_codec.serialize,
        "job_deserializer": job_codec.deserialize,
    }


def arq_command_settings() -> Settings:
    """The `arq` command's settings, read as it imports WorkerSettings; it then runs PmdWorker."""
    settings = load_settings(PROCESS, serving=True)
    check_email_copy(settings, PROCESS)
    arq_lines_once()
    arq_command_runs_pmd_worker()
    return settings


def main() -> int:
    """`python -m pmd_service worker`."""
    settings = load_settings(PROCESS, embedded=dev_servers, serving=True)
    check_email_copy(settings, PROCESS)
    wait_for_services(settings, PROCESS)
    worker = PmdWorker(**worker_options(settings))
    try:
        worker.run()
    except MetricsPortError as exc:
        stop(f"{PROCESS}: {exc}")
    return 0

"""The arq worker, wired in one place: the jobs it runs (one function per claimed job kind the
features declare, the sweep and the cleanup as crons beside the features' scheduled jobs), its
options, and its two entry points.

`python -m pmd_service worker` (`main`, the supported form) waits for PostgreSQL and Redis, runs
the options below on `PmdWorker` and writes each log line once; `arq worker.WorkerSettings`
(or `arq pmd_service.worker_settings.WorkerSettings`) runs the same options on `PmdWorker` too,
as arq's settings class, under arq's own start-up. Importing this module reads no setting, so
that `main` (which reads them its own way, embedded servers in dev mode) and the tests, with
their own, can.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from arq import cron, func
from arq.constants import default_queue_name

from . import dev_servers
from .core import job_codec, logs
from .core.redis_client import worker_redis_settings
from .core.settings import Settings
from .core.startup import StartupError, load_settings, services_reachable, stop, wait_for_services
from .features import JOB_KINDS, SCHEDULES
from .jobs import context
from .jobs.arq_adapter import PmdWorker, arq_command_runs_pmd_worker, arq_lines_once
from .jobs.driver import job_function
from .jobs.worker_metrics import MetricsPortError
from .mail.language import check_at_start as check_email_copy
from .upkeep.cleanup import daily_cleanup
from .upkeep.sweep import sweep

log = logging.getLogger(__name__)

PROCESS = "pmd-worker"

# A kind's tries and timeout are its queue's (features/bdr/job_sql.py, features/exports/job_sql.py say why).
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
HEALTH_CHECK_INTERVAL = 30
MAX_JOBS = 4
# arq polls its queue and starts at most MAX_JOBS jobs a poll, so the delay bounds both a
# request's wait and one worker's rate; a poll is one ZRANGEBYSCORE, skipped while every slot is
# busy (docs/benchmarks-details.md, "Measurements behind the code").
POLL_DELAY = 0.02
# On SIGTERM a running build gets this long; an interrupted one is taken over later.
JOB_COMPLETION_WAIT = 20


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
    """The keyword arguments of arq's Worker, and the attributes of the `arq` command's
    WorkerSettings.
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


def arq_command_settings() -> Settings:
    """The settings of the `arq` command's form, read when it imports WorkerSettings; arq's
    own log handler, which it adds right after, never writes a line, and the Worker it then
    makes is PmdWorker (jobs/arq_adapter.py)."""
    settings = load_settings(PROCESS)
    check_email_copy(settings, PROCESS)
    arq_lines_once()
    arq_command_runs_pmd_worker()
    return settings


def main() -> int:
    """`python -m pmd_service worker`."""
    settings = load_settings(PROCESS, embedded=dev_servers)
    check_email_copy(settings, PROCESS)
    wait_for_services(settings, PROCESS)
    worker = PmdWorker(**worker_options(settings))
    try:
        worker.run()
    except MetricsPortError as exc:
        stop(f"{PROCESS}: {exc}")
    return 0

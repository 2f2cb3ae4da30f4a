"""The arq worker: `arq pmd_service.jobs.worker.WorkerSettings` (or `arq worker.WorkerSettings`
from a checkout) runs it; `arq --check …` checks its health.

arq reads the class's own attributes, so the settings are read when this module is imported:
from the environment only (DATABASE_URL and REDIS_URL must be set; `make run` sets them for
its worker). Importing it starts nothing and connects nowhere.
"""

from __future__ import annotations

from ..core.startup import load_settings
from . import context
from .worker_options import (
    CRON_JOBS,
    FUNCTIONS,
    HEALTH_CHECK_INTERVAL,
    JOB_COMPLETION_WAIT,
    MAX_JOBS,
    POLL_DELAY,
    on_startup,
    worker_redis_settings,
)

_settings = load_settings("pmd-worker")


class WorkerSettings:
    functions = FUNCTIONS
    cron_jobs = CRON_JOBS
    on_startup = on_startup(_settings)
    on_shutdown = context.shutdown
    redis_settings = worker_redis_settings(_settings.redis_url)
    health_check_interval = HEALTH_CHECK_INTERVAL
    max_jobs = MAX_JOBS
    poll_delay = POLL_DELAY
    job_completion_wait = JOB_COMPLETION_WAIT

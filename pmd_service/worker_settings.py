"""arq's settings class for the `arq` command: `arq worker.WorkerSettings` from a checkout or the
image (worker.py), `arq pmd_service.worker_settings.WorkerSettings` anywhere.

Importing it reads the settings (arq imports it to run it) and has the `arq` command run these
options on the guarded `PmdWorker`, as `python -m pmd_service worker`, the supported form, runs
the same options (`worker_options`, pmd_service/worker.py).
"""

from __future__ import annotations

from .core import job_codec
from .core.redis_client import worker_redis_settings
from .jobs.context import shutdown
from .worker import (
    CRON_JOBS,
    FUNCTIONS,
    HEALTH_CHECK_INTERVAL,
    JOB_COMPLETION_WAIT,
    MAX_JOBS,
    POLL_DELAY,
    arq_command_settings,
    on_startup,
)

SETTINGS = arq_command_settings()


class WorkerSettings:
    """The options `worker_options` gives (a test holds the two equal); on_startup also waits
    for PostgreSQL, which the supported form waits for before it starts the Worker."""

    functions = FUNCTIONS
    cron_jobs = CRON_JOBS
    on_startup = on_startup(SETTINGS, wait=True)
    on_shutdown = shutdown
    redis_settings = worker_redis_settings(SETTINGS.redis_url)
    health_check_interval = HEALTH_CHECK_INTERVAL
    max_jobs = MAX_JOBS
    poll_delay = POLL_DELAY
    job_completion_wait = JOB_COMPLETION_WAIT
    keep_result = 0  # see worker_options
    job_serializer = job_codec.serialize  # JSON, never pickle (core/job_codec.py)
    job_deserializer = job_codec.deserialize

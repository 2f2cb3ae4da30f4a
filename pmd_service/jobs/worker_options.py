"""The arq Worker configuration, shared by `worker.py` and the tests (which run it in burst mode)."""

from __future__ import annotations

from functools import partial
from typing import Any

from arq import cron, func

from ..bdr.enqueue import JOB_NAME
from ..queue import redis_settings
from ..settings import Settings
from . import context
from .cleanup import cleanup_expired_bdrs
from .process_bdr import process_bdr
from .sweep import sweep


def worker_options(settings: Settings) -> dict[str, Any]:
    assert settings.redis_url is not None
    return {
        # Retries are counted in the database (attempts), not by arq: a sweep-enqueued run is
        # a new arq job. keep_result=0 frees the job id at once so it can be enqueued again.
        "functions": [func(process_bdr, name=JOB_NAME, max_tries=10, timeout=1800, keep_result=0)],
        "cron_jobs": [
            cron(sweep, second={5}, run_at_startup=True, timeout=120),
            cron(cleanup_expired_bdrs, hour={3}, minute={17}, second={0}, timeout=1800),
        ],
        "on_startup": partial(context.startup, settings=settings, serve_metrics=True),
        "on_shutdown": context.shutdown,
        "redis_settings": redis_settings(settings.redis_url),
        "health_check_interval": 30,
        "max_jobs": 4,
        # arq polls its queue; the default 0.5 s was most of a small BDR's POST → ready time.
        "poll_delay": 0.1,
        # On SIGTERM a running build gets this long; an interrupted one is taken over later.
        "job_completion_wait": 20,
    }

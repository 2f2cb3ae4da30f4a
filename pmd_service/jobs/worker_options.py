"""The arq Worker configuration, shared by `worker.py` and the tests (which run it in burst mode)."""

from __future__ import annotations

from functools import partial
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..bdr.enqueue import JOB_NAME
from ..queue import redis_settings
from ..settings import Settings
from . import context
from .cleanup import cleanup_expired_bdrs
from .process_bdr import process_bdr
from .sweep import sweep

# arq's poll loop has no error handling: one failed Redis call ends the worker process (seen
# in the chaos run: a 20 s Redis restart killed both workers, and a supervisor restarting them
# meanwhile only watched them fail again). Each call retries with backoff instead, ~1 minute.
# OSError too: redis-py retries a refused reconnect of a pooled connection only when the
# socket's own error (ConnectionRefusedError) is in the list, not just redis' ConnectionError.
REDIS_RETRIES = 40
REDIS_BACKOFF_CAP = 2.0


def worker_redis_settings(url: str) -> RedisSettings:
    settings = redis_settings(url)
    settings.retry = Retry(ExponentialBackoff(cap=REDIS_BACKOFF_CAP, base=0.1), REDIS_RETRIES)
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    return settings


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
        "redis_settings": worker_redis_settings(settings.redis_url),
        "health_check_interval": 30,
        "max_jobs": 4,
        # arq polls its queue; the default 0.5 s was most of a small BDR's POST → ready time.
        "poll_delay": 0.1,
        # On SIGTERM a running build gets this long; an interrupted one is taken over later.
        "job_completion_wait": 20,
    }

"""The arq worker: `arq worker.WorkerSettings` runs it; `arq --check worker.WorkerSettings`
checks its health.

arq reads the class attributes below when it imports this module, so the Redis location is
resolved here; with REDIS_URL/DATABASE_URL unset (dev only) that starts or joins the embedded
servers under ./.data.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from arq import cron

from pmd_service import logs
from pmd_service.jobs import context
from pmd_service.jobs.events import purge_old_events
from pmd_service.queue import redis_settings
from pmd_service.settings import ConfigError, Settings


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.exit(f"pmd-worker: configuration error: {exc}")
    if settings.embedded:
        from pmd_service.embedded import with_embedded_services

        settings = with_embedded_services(settings)
    return settings


SETTINGS = _settings()


async def on_startup(ctx: dict[str, Any]) -> None:
    logs.configure(SETTINGS.log_format)
    await context.startup(ctx, SETTINGS)


class WorkerSettings:
    functions: ClassVar[list[Any]] = []
    cron_jobs: ClassVar[list[Any]] = [
        cron(purge_old_events, hour={3}, minute={17}, run_at_startup=False)
    ]
    on_startup = on_startup
    on_shutdown = context.shutdown
    redis_settings = redis_settings(SETTINGS.redis_url or "")
    health_check_interval = 30
    max_jobs = 4

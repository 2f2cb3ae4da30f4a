"""The arq worker: `arq worker.WorkerSettings` runs it; `arq --check worker.WorkerSettings`
checks its health.

arq reads the class attributes below when it imports this module, so settings are resolved
here (from the environment only; no connection is made); with REDIS_URL/DATABASE_URL unset
(dev only) that starts or joins the embedded servers under ./.data.
"""

from __future__ import annotations

import sys
from typing import Any

from pmd_service import logs
from pmd_service.jobs.worker_options import worker_options
from pmd_service.settings import ConfigError, Settings


def _settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.exit(f"pmd-worker: configuration error: {exc}")
    logs.configure(settings.log_format)
    if settings.embedded:
        from pmd_service.embedded import with_embedded_services

        settings = with_embedded_services(settings)
    return settings


_OPTIONS: dict[str, Any] = worker_options(_settings())

# arq takes its options from the attributes of this class.
WorkerSettings = type("WorkerSettings", (), _OPTIONS)

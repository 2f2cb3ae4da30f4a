"""The arq worker: `arq worker.WorkerSettings` runs it; `arq --check worker.WorkerSettings`
checks its health.

arq reads the class attributes below when it imports this module, so settings are resolved
here (from the environment only; no connection is made); with REDIS_URL/DATABASE_URL unset
(dev only) that starts or joins the embedded servers under ./.data.
"""

from __future__ import annotations

from typing import Any

from pmd_service.jobs.worker_options import worker_options
from pmd_service.startup import load_settings

_OPTIONS: dict[str, Any] = worker_options(load_settings("pmd-worker"))

# arq takes its options from the attributes of this class.
WorkerSettings = type("WorkerSettings", (), _OPTIONS)

"""`python -m pmd_service worker`: the arq worker with the service's own start-up.

The options of `arq worker.WorkerSettings`, run the way arq's command runs them, by a Worker
that survives a Redis connection lost while it claims a job (`PmdWorker`), but without arq's logging set-up (each line once, JSON under LOG_FORMAT=json), after
PostgreSQL and Redis answer (STARTUP_WAIT_SECONDS), and with setup problems as one line.
"""

from __future__ import annotations

from pathlib import Path

from ..core.startup import load_settings, stop, wait_for_services
from .metrics import MetricsPortError
from .worker_options import PmdWorker, worker_options

PROCESS = "pmd-worker"


def dev_servers(data_dir: Path, database_url: str | None, redis_url: str | None) -> tuple[str, str]:
    """load_settings' `embedded`, called in dev mode only: production never imports dev/."""
    from ..dev.embedded import services

    return services(data_dir, database_url, redis_url)


def main() -> int:
    settings = load_settings(PROCESS, embedded=dev_servers)
    wait_for_services(settings, PROCESS)
    worker = PmdWorker(**worker_options(settings))
    try:
        worker.run()
    except MetricsPortError as exc:
        stop(f"{PROCESS}: {exc}")
    return 0

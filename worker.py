"""The arq worker from a checkout: `arq worker.WorkerSettings` (health check: `arq --check
worker.WorkerSettings`). The options live in the package: pmd_service/jobs/worker.py."""

from pmd_service.jobs.worker import WorkerSettings

__all__ = ["WorkerSettings"]

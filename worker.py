"""The arq worker from a checkout: `arq worker.WorkerSettings` (health check: `arq --check
worker.WorkerSettings`). The options live in the package: pmd_service/worker.py."""

from pmd_service.worker import WorkerSettings

__all__ = ["WorkerSettings"]

"""The arq worker from a checkout: `arq worker.WorkerSettings` (pmd_service/worker.py)."""

from pmd_service.worker import WorkerSettings

__all__ = ["WorkerSettings"]

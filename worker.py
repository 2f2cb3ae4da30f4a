"""The arq worker from a checkout or the image: `arq worker.WorkerSettings`, arq's settings
class (pmd_service/worker_settings.py)."""

from pmd_service.worker_settings import WorkerSettings

__all__ = ["WorkerSettings"]

"""The arq worker's settings for the `arq` command: `arq pmd_service.jobs.worker.WorkerSettings`
(or `arq worker.WorkerSettings` from a checkout) runs it; `arq --check …` checks its health.
`python -m pmd_service worker` (jobs/main.py) runs the same options with the service's own
start-up (waiting for PostgreSQL and Redis, one-line errors) and its own Worker (`PmdWorker`,
which survives a Redis connection lost while it claims a job): the supported form.

arq reads the options when this module is imported, so the settings are read then: from the
environment only (DATABASE_URL and REDIS_URL must be set). Importing it starts nothing,
connects nowhere and writes nothing.
"""

from __future__ import annotations

from typing import Any

from ..core import logs
from ..core.startup import load_settings
from .worker_options import worker_options


class ArqOptions(dict[str, Any]):
    """The Worker's options as a mapping (arq takes a class or a dict).

    The `arq` command sets up its own logging (a plain handler on the `arq` logger) after it
    imports this and before it reads these options: reading them is the first moment the
    service's code runs after that, and takes the worker's lines back, so that none is written
    twice (once not as JSON).
    """

    def items(self) -> Any:
        logs.drop_foreign_handlers("arq")
        return super().items()


WorkerSettings = ArqOptions(worker_options(load_settings("pmd-worker"), wait_for_services=True))

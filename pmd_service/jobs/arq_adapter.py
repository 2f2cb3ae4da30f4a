"""The one place that leans on arq's internals, each named with the arq version it was read
from (pyproject.toml pins that version; tests/unit/test_arq_adapter.py fails the day arq changes
what is relied on here, so an upgrade re-reads this module first).

- `PmdWorker.start_jobs`: arq's claim takes a job slot (`job_counter`, `sem`) before it WATCHes
  the job's in-progress key, and gives it back on a failed EXEC only. redis-py turns a
  connection lost during the reads after WATCH into WatchError, which escaped arq's poll loop
  and ended the worker (the chaos run: a worker exited 1 when Redis stopped). The slot is given
  back here and the next poll claims the job again. No public hook exists for it.
- `ArqOptions.items`: the `arq` command configures its own logging after importing
  `WorkerSettings` and reads the options (through `items()`) right after; that read is the
  first moment the service's code runs again, and it takes the worker's log lines back, so
  none is written twice. The `python -m pmd_service worker` form needs neither.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from arq.worker import Worker
from redis.exceptions import WatchError

from ..core import error_reports, logs

ARQ_VERSION = "0.28.0"  # the release these internals were read from


class PmdWorker(Worker):
    """arq's Worker, surviving a Redis connection lost while it claims a job, with Sentry's
    job reports for a Worker made directly (arq's integration covers only the `arq` command's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Copies: a cron job's object is the module's, shared by every Worker.
        for name, function in list(self.functions.items()):
            reported = error_reports.job_reporter(name, function.coroutine)
            self.functions[name] = replace(function, coroutine=reported)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        try:
            await super().start_jobs(job_ids)
        except WatchError:
            # arq took the slot (counter and semaphore) for the job it was claiming.
            self.job_counter -= 1
            self.sem.release()


class ArqOptions(dict[str, Any]):
    """The Worker's options as a mapping, for the `arq` command (arq takes a class or a dict)."""

    def items(self) -> Any:
        logs.drop_foreign_handlers("arq")
        return super().items()

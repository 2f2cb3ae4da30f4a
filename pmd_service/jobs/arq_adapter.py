"""The one place that leans on arq's internals, each named with the arq version it was read
from (pyproject.toml pins that version; tests/unit/test_arq_adapter.py fails the day arq changes
what is relied on here, so an upgrade re-reads this module first).

- `PmdWorker.start_jobs`: arq's claim takes a job slot (`job_counter`, `sem`) before it WATCHes
  the job's in-progress key, and gives it back on a failed EXEC only. redis-py turns a
  connection lost during the reads after WATCH into WatchError, which would escape arq's poll
  loop and end the worker; the slot is given back here and the next poll claims the job again.
- `PmdWorker.run_cron` and its cron functions: arq runs whatever job names a cron function, so
  anyone who can write to the queue (or `enqueue_job` with a cron's name) could run one on
  demand. arq's scheduler names each run `{cron name}:{its time in ms}` (`unique`, the
  default): a cron function here runs only for such an id whose time is one of its schedule's
  (and recent), or its start-up run this worker's scheduler made; any other is refused with
  one line. A start-up run another worker made and this one picked up is refused too (that
  cron's next scheduled run does its work).
- `ArqOptions.items`: the `arq` command configures its own logging after importing
  `WorkerSettings` and reads the options (through `items()`) right after; that read is the
  first moment the service's code runs again, and it takes the worker's log lines back, so
  none is written twice. The `python -m pmd_service worker` form needs neither.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from arq.cron import CronJob, next_cron
from arq.utils import to_unix_ms
from arq.worker import Worker
from redis.exceptions import WatchError

from ..core import error_reports, logs

log = logging.getLogger(__name__)

ARQ_VERSION = "0.28.0"  # the release these internals were read from

# How late a scheduled run may start (every job slot busy): later, its id could be a replay of
# one that already ran, queued again once its in-progress key (kept a minute) is gone.
CRON_LATENESS = timedelta(minutes=10)
_SCHEDULED_ID = re.compile(r"(?P<name>.+):(?P<ms>[0-9]{1,15})")


class PmdWorker(Worker):
    """arq's Worker, surviving a Redis connection lost while it claims a job, with Sentry's
    job reports for a Worker made directly (arq's integration covers only the `arq` command's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._startup_runs: set[str] = set()  # ids of the start-up runs this scheduler made
        # Copies: a cron job's object is the module's, shared by every Worker.
        for name, function in list(self.functions.items()):
            coroutine = error_reports.job_reporter(name, function.coroutine)
            if isinstance(function, CronJob):
                if not function.unique or function.job_id is not None:
                    raise ValueError(f"{name}: only a cron job with arq's per-run ids is known")
                coroutine = self._scheduled_only(function, coroutine)
            self.functions[name] = replace(function, coroutine=coroutine)

    async def run_cron(self, n: datetime, delay: float, num_windows: int = 2) -> None:
        for cron_job in self.cron_jobs:
            if cron_job.next_run is None and cron_job.run_at_startup:
                # arq's scheduler makes this run's id of `n` itself, not of the schedule.
                self._startup_runs.add(f"{cron_job.name}:{to_unix_ms(n)}")
        await super().run_cron(n, delay, num_windows)

    def made_by_scheduler(self, cron_job: CronJob, job_id: str) -> bool:
        """Whether `job_id` is one arq's scheduler makes for `cron_job`: its start-up run (by
        this worker), or one of its scheduled times, recent."""
        if job_id in self._startup_runs:
            return True
        found = _SCHEDULED_ID.fullmatch(job_id)
        if found is None or found["name"] != cron_job.name:
            return False
        ms = int(found["ms"])
        now_ms = time.time() * 1000
        if not now_ms - CRON_LATENESS.total_seconds() * 1000 <= ms <= now_ms + 60_000:
            return False
        at = datetime.fromtimestamp(ms / 1000, tz=self.timezone)
        scheduled = next_cron(
            at - timedelta(seconds=2),
            month=cron_job.month,
            day=cron_job.day,
            weekday=cron_job.weekday,
            hour=cron_job.hour,
            minute=cron_job.minute,
            second=cron_job.second,
            microsecond=cron_job.microsecond,
        )
        return to_unix_ms(scheduled) == ms

    def _scheduled_only(self, cron_job: CronJob, job: Any) -> Any:
        async def scheduled(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            job_id = str(ctx.get("job_id"))
            if not self.made_by_scheduler(cron_job, job_id):
                log.warning(
                    "job %s refused: %s runs only as its schedule's own job, not queued",
                    job_id,
                    cron_job.name,
                )
                return None
            return await job(ctx, *args, **kwargs)

        return scheduled

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

"""The one place that leans on arq's internals, as read from ARQ_VERSION (pyproject.toml pins
it; tests/unit/test_arq_adapter.py fails the day arq changes what is relied on here).

- `PmdWorker.start_jobs`: a connection lost after arq's claim WATCHes a job raises WatchError,
  which would end the worker; the job slot is given back and the next poll claims it again.
- `PmdWorker.run_cron`: a cron function runs only under an id arq's scheduler makes
  (`{cron name}:{its time in ms}`, recent and on its schedule, or this worker's start-up run).
- `start_jobs`, `run_job`, `_poll_iteration`: a job with a value in Redis arq could not have
  written (`malformed`), or one arq fails on outside its own handling, is removed whole with one
  line, as is a queue or abort set of the wrong type; the sweep enqueues its row again.
- `arq_command_runs_pmd_worker`: the `arq` command builds PmdWorker instead of arq's Worker.
- `arq_lines_once`: a filter on arq's loggers drops the handler the `arq` command adds, so no
  line is written twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from signal import Signals
from typing import Any

import arq.cli
from arq.connections import ArqRedis
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.cron import CronJob, next_cron
from arq.jobs import Deserializer, deserialize_result
from arq.typing import WorkerSettingsType
from arq.utils import timestamp_ms, to_unix_ms
from arq.worker import Worker, get_kwargs
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core import error_reports, logs
from ..core.job_codec import MAX_TRY

log = logging.getLogger(__name__)

ARQ_VERSION = "0.28.0"  # the release these internals were read from

# How late a scheduled run may start: later, its id could be a replay of one that already ran.
CRON_LATENESS = timedelta(minutes=10)
_SCHEDULED_ID = re.compile(r"(?P<name>.+):(?P<ms>[0-9]{1,15})")

# The keys arq keeps per job, each its prefix and the job's id, in the order `malformed` reads.
JOB_KEY_PREFIXES = (job_key_prefix, retry_key_prefix, in_progress_key_prefix, result_key_prefix)
# What arq's claim writes under a job's in-progress key (always with an expiry).
IN_PROGRESS_MARK = b"1"
# A job found sound is read again this late, if arq still sees it queued (a run holds it).
RESCREEN_SECONDS = 60.0
# How often the queue is searched for jobs due later than any the service defers.
TIDY_SECONDS = 60.0
FAR_AHEAD_MS = 86_400_000
# Errors of the connection to Redis, not of a value in it: they end the worker as they did.
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_READS_PER_JOB = 7


def job_keys(job_id: bytes) -> list[bytes]:
    """Every key arq keeps for the job `job_id`, in JOB_KEY_PREFIXES' order."""
    return [prefix.encode() + job_id for prefix in JOB_KEY_PREFIXES]


def shown(job_id: bytes) -> str:
    """A job id for a log line: whatever bytes someone queued, one short printable line."""
    text = job_id.decode("utf-8", "backslashreplace")
    return (text if text.isprintable() else ascii(text))[:120]


def _value(raw: bytes) -> str:
    return repr(raw[:40]) + ("…" if len(raw) > 40 else "")


def _judge(
    job_id: bytes,
    replies: Sequence[Any],
    *,
    deserializer: Deserializer,
    longest_run_ms: int,
    claimed: bool,
) -> str | None:
    """Why the values read of one job are not what arq writes, or None when they are."""
    score, body, tries, mark, mark_ttl, result, result_ttl = replies
    try:
        job_id.decode()
    except UnicodeDecodeError:
        return "its id is not UTF-8"
    if isinstance(score, float) and not (0 < score <= timestamp_ms() + FAR_AHEAD_MS):
        return f"its queue score {score} is no time arq gives"
    if not claimed:  # claimed: the mark is the claim's own
        if isinstance(mark, ResponseError):
            return f"{in_progress_key_prefix}{shown(job_id)} is not a string"
        if mark is not None:
            if mark != IN_PROGRESS_MARK:
                return f"its in-progress mark holds {_value(mark)}, not arq's"
            if not 0 <= mark_ttl <= 2 * longest_run_ms:
                return "its in-progress mark outlives any run"
            return None  # a run holds it: the rest is that run's
    if isinstance(body, ResponseError):
        return f"{job_key_prefix}{shown(job_id)} is not a string"
    if isinstance(tries, ResponseError):
        return f"{retry_key_prefix}{shown(job_id)} is not a string"
    if tries is not None and not (tries.isdigit() and len(tries) <= 10 and int(tries) <= MAX_TRY):
        return f"its try count is {_value(tries)}, not a number arq counts"
    if isinstance(result, ResponseError):
        return f"{result_key_prefix}{shown(job_id)} is not a string"
    if result is not None:
        if result_ttl < 0:
            return "its result never expires"
        try:
            deserialize_result(result, deserializer=deserializer)
        except Exception:  # whatever it holds, it is not a result
            return f"its result is {_value(result)}, not one arq writes"
    return None


async def malformed(
    redis: ArqRedis,
    queue: str,
    job_ids: Sequence[bytes],
    *,
    deserializer: Deserializer,
    longest_run_ms: int,
    claimed: bool = False,
) -> dict[bytes, str]:
    """The jobs of `job_ids` with a value arq could not have written, each with why."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            body, tries, mark, result = job_keys(job_id)
            pipe.zscore(queue, job_id)
            pipe.get(body)
            pipe.get(tries)
            pipe.get(mark)
            pipe.pttl(mark)
            pipe.get(result)
            pipe.pttl(result)
        replies = await pipe.execute(raise_on_error=False)
    found = {}
    for n, job_id in enumerate(job_ids):
        own = replies[n * _READS_PER_JOB : (n + 1) * _READS_PER_JOB]
        for reply in own:
            if isinstance(reply, _UNREACHABLE):
                raise reply
        why = _judge(
            job_id, own, deserializer=deserializer, longest_run_ms=longest_run_ms, claimed=claimed
        )
        if why is not None:
            found[job_id] = why
    return found


class PmdWorker(Worker):
    """arq's Worker, surviving a Redis connection lost while it claims a job, with Sentry's
    job reports for a Worker made directly (arq's integration covers only the `arq` command's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._startup_runs: set[str] = set()  # ids of the start-up runs this scheduler made
        self._sound: dict[bytes, float] = {}  # job id → until when its values need no reading
        self._next_tidy = 0.0
        self._closing = False  # a signal (or close()) has cancelled the running jobs
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
        """Whether arq's scheduler made `job_id` for `cron_job` (see the module's docstring)."""
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
        units = ("month", "day", "weekday", "hour", "minute", "second", "microsecond")
        scheduled = next_cron(
            at - timedelta(seconds=2), **{unit: getattr(cron_job, unit) for unit in units}
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
        dropped = await self._drop_malformed(job_ids)
        for job_id in job_ids:
            if job_id in dropped:
                continue
            # One at a time: arq's claim of one job must not take the others down with it.
            try:
                await super().start_jobs([job_id])
            except Exception as exc:
                # arq took the slot (counter and semaphore) for the job it was claiming.
                self.job_counter -= 1
                self.sem.release()
                if not isinstance(exc, WatchError):  # a lost claim: the next poll claims it
                    await self._failed_on(job_id, exc)

    def handle_sig(self, signum: Signals) -> None:
        self._closing = True
        super().handle_sig(signum)

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        # Its wait ends by cancelling the jobs still running, without handle_sig.
        self._closing = True
        super().handle_sig_wait_for_completion(signum)

    async def run_job(self, job_id: str, score: int) -> None:
        try:
            await super().run_job(job_id, score)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # Cancelled at shutdown before arq's own handling began: raised, it would end arq's
            # close() with an error; the job stays queued, released for the next worker.
            with contextlib.suppress(RedisError, OSError):  # unreachable: the mark expires
                await asyncio.shield(self.pool.delete(in_progress_key_prefix + job_id))
        except Exception as exc:
            # The job's own errors are arq's to handle: this is arq failing on its values.
            await self._failed_on(job_id.encode(), exc)

    async def _poll_iteration(self) -> None:
        try:
            if time.monotonic() >= self._next_tidy:
                self._next_tidy = time.monotonic() + TIDY_SECONDS
                await self._tidy()
            await super()._poll_iteration()
        except ResponseError:
            if not await self._repair_sorted_sets():
                raise

    async def _malformed(self, job_ids: list[bytes], claimed: bool = False) -> dict[bytes, str]:
        return await malformed(
            self.pool,
            self.queue_name,
            job_ids,
            deserializer=self.job_deserializer,  # type: ignore[arg-type]
            longest_run_ms=int(self.in_progress_timeout_s * 1000),
            claimed=claimed,
        )

    async def _drop_malformed(self, job_ids: list[bytes]) -> set[bytes]:
        now = time.monotonic()
        unread = [job_id for job_id in job_ids if self._sound.get(job_id, 0.0) <= now]
        if not unread:
            return set()
        found = await self._malformed(unread)
        self._sound = {job_id: until for job_id, until in self._sound.items() if until > now}
        for job_id in unread:
            if job_id in found:
                await self._drop(job_id, found[job_id])
            else:
                self._sound[job_id] = now + RESCREEN_SECONDS
        return set(found)

    async def _failed_on(self, job_id: bytes, exc: Exception) -> None:
        """arq raised outside its own handling while it held `job_id`: a value is not arq's."""
        if isinstance(exc, _UNREACHABLE):
            raise exc
        repaired = await self._repair_sorted_sets()
        found = await self._malformed([job_id], claimed=True)
        if job_id in found:
            await self._drop(job_id, found[job_id])
        elif not repaired:  # a set of the wrong type explains it: arq's other writes went through
            await self._drop(job_id, f"arq failed on it ({type(exc).__name__}: {str(exc)[:200]})")

    async def _drop(self, job_id: bytes, why: str) -> None:
        """Removes the job whole, so nothing of it comes back on a restart (its row is the sweep's)."""
        async with self.pool.pipeline(transaction=True) as tr:
            tr.delete(*job_keys(job_id))
            tr.zrem(self.queue_name, job_id)
            tr.zrem(abort_jobs_ss, job_id)
            # A sorted set of the wrong type fails its ZREM alone; _tidy removes that set.
            await tr.execute(raise_on_error=False)
        self._sound.pop(job_id, None)
        self.jobs_failed += 1
        log.warning("job %s removed from the queue: %s", shown(job_id), why)

    async def _repair_sorted_sets(self) -> bool:
        """Removes the queue or the abort set when it is not a sorted set; whether one was."""
        repaired = False
        for key in (self.queue_name, abort_jobs_ss):
            kind = await self.pool.type(key)
            if kind not in (b"zset", b"none"):
                await self.pool.delete(key)
                log.warning(
                    "%s was a %s, not a sorted set: removed (the sweep enqueues again what a "
                    "queue held)",
                    key,
                    kind.decode(),
                )
                repaired = True
        return repaired

    async def _tidy(self) -> None:
        """What arq's poll never reads: sets of the wrong type, and jobs due too late."""
        await self._repair_sorted_sets()
        late = await self.pool.zrangebyscore(
            self.queue_name,
            min=timestamp_ms() + FAR_AHEAD_MS,
            max=math.inf,
            start=0,
            num=self.queue_read_limit,
            withscores=True,
        )
        for job_id, score in late:
            await self._drop(job_id, f"its queue score {score} is no time arq gives")


def create_pmd_worker(settings_cls: WorkerSettingsType, **kwargs: Any) -> PmdWorker:
    """arq's `create_worker`, building PmdWorker."""
    return PmdWorker(**{**get_kwargs(settings_cls), **kwargs})


def run_pmd_worker(settings_cls: WorkerSettingsType, **kwargs: Any) -> PmdWorker:
    """arq's `run_worker`, running PmdWorker."""
    worker = create_pmd_worker(settings_cls, **kwargs)
    worker.run()
    return worker


def arq_command_runs_pmd_worker() -> None:
    """The `arq` command makes PmdWorker instead of arq's Worker."""
    # Not arq.worker's, which sentry-sdk's integration wraps: PmdWorker reports jobs itself.
    vars(arq.cli).update(run_worker=run_pmd_worker, create_worker=create_pmd_worker)


# The loggers arq writes with (`logging.getLogger` in each of its modules).
ARQ_LOGGERS = ("arq.connections", "arq.jobs", "arq.utils", "arq.worker")


def _ours_only(record: logging.LogRecord) -> bool:
    """Drops the `arq` logger's foreign handlers before each arq line is handled."""
    logs.drop_foreign_handlers()
    return True


def arq_lines_once() -> None:
    """Every arq line written once, by the service's handler (addFilter adds one filter once)."""
    for name in ARQ_LOGGERS:
        logging.getLogger(name).addFilter(_ours_only)

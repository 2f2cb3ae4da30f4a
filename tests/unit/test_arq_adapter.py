"""What pmd_service/jobs/arq_adapter.py and core/job_codec.py rely on in arq, checked against
the arq installed: each test fails the day arq changes it, so an upgrade re-reads them first."""

from __future__ import annotations

import inspect
import logging
import logging.config
import re
from importlib.metadata import version
from typing import Any

import arq.cli
import arq.connections
import arq.constants
import arq.jobs
import arq.utils
import arq.worker
import pytest
from arq import func
from arq.logs import default_log_config

from pmd_service.core import logs
from pmd_service.jobs.arq_adapter import (
    ARQ_LOGGERS,
    ARQ_VERSION,
    IN_PROGRESS_MARK,
    JOB_KEY_PREFIXES,
    PmdWorker,
    arq_command_runs_pmd_worker,
    arq_lines_once,
)


def arq_run_job() -> Any:
    """arq's own Worker.run_job: sentry-sdk's arq integration, once a test has set it up in this
    process, puts a wrapper in its place that holds arq's in its closure."""
    function = arq.worker.Worker.run_job
    while not function.__module__.startswith("arq."):
        cells = [cell.cell_contents for cell in function.__closure__ or ()]
        function = next(c for c in cells if inspect.isfunction(c) and c.__name__ == "run_job")
    return function


def _in_order(code: Any, *parts: str) -> str:
    """The source of `code` (a string is one already), checked to hold `parts` in this order."""
    source = code if isinstance(code, str) else inspect.getsource(code)
    at = 0
    for part in parts:
        at = source.find(part, at)
        assert at >= 0, f"{part!r} missing, or out of order, in:\n{source}"
        at += len(part)
    return source


def test_the_installed_arq_is_the_one_the_adapter_was_read_from() -> None:
    assert version("arq") == ARQ_VERSION, "re-read jobs/arq_adapter.py against this arq"


def test_a_claim_takes_its_slot_before_watching_and_frees_it_only_around_exec() -> None:
    """PmdWorker.start_jobs gives the slot back on a WatchError from the reads after WATCH:
    true only while arq takes the slot first and catches WatchError around EXEC alone."""
    source = _in_order(
        arq.worker.Worker.start_jobs,
        "await self.sem.acquire()",
        "self.job_counter = self.job_counter + 1",
        "await pipe.watch(",
        "await pipe.exists(",
        "try:",
        "await pipe.execute()",
        "except (ResponseError, WatchError):",
        "self.job_counter = self.job_counter - 1",
        "self.sem.release()",
    )
    assert source.count("WatchError") == 1, "arq now handles WatchError itself: drop the override"


def test_the_arq_command_configures_its_logging_after_the_import_keeping_arq_s_filters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """arq_lines_once: the `arq` command imports WorkerSettings, then sets up its logging
    (dictConfig of its default, which keeps the filters of the loggers under `arq`), then runs
    the Worker; every logger of arq's is one ARQ_LOGGERS names, and with the filter on, an arq
    line goes to the service's handler alone."""
    _in_order(arq.cli.cli.callback, "import_string(worker_settings)", "dictConfig(", "run_worker(")
    named = set()
    for module in (arq.connections, arq.jobs, arq.utils, arq.worker):
        named |= set(re.findall(r"getLogger\('([^']+)'\)", inspect.getsource(module)))
    assert named == set(ARQ_LOGGERS)
    root = logging.getLogger()
    ours = logs.handler("text")
    saved = root.handlers[:], root.level
    root.handlers, root.level = [ours], logging.INFO
    try:
        arq_lines_once()
        logging.config.dictConfig(default_log_config(verbose=False))
        assert any(not logs._is_ours(h) for h in logging.getLogger("arq").handlers)
        for name in ARQ_LOGGERS:
            logging.getLogger(name).info("line of %s", name)
        assert logging.getLogger("arq").handlers == []
    finally:
        root.handlers, root.level = saved
        logging.getLogger("arq").setLevel(logging.NOTSET)
        for name in ARQ_LOGGERS:  # this process's other tests run without the filter
            for found in logging.getLogger(name).filters[:]:
                logging.getLogger(name).removeFilter(found)
    written = capsys.readouterr().err.splitlines()
    assert [line.rsplit(": ", 1)[-1] for line in written] == [
        f"line of {name}" for name in ARQ_LOGGERS
    ], written


def test_a_scheduled_run_is_named_by_its_time_and_a_start_up_run_by_the_worker_s() -> None:
    """PmdWorker.made_by_scheduler knows arq's cron runs by their ids: `{name}:{ms}` of the
    run's time, a start-up run's time being the `n` run_cron was given; a job's id reaches
    the function in its ctx."""
    _in_order(
        arq.worker.Worker.run_cron,
        "if cron_job.run_at_startup:",
        "cron_job.next_run = n",
        "job_id = f'{cron_job.name}:{to_unix_ms(cron_job.next_run)}' if cron_job.unique",
        "_job_id=job_id",
    )
    _in_order(arq_run_job(), "'job_id': job_id", "function.coroutine(ctx, *args, **kwargs)")


def test_the_job_deserializer_s_errors_fail_the_job_and_its_fields_are_read_unchecked() -> None:
    """job_codec.deserialize checks the fields' shape: arq fails the job when the deserializer
    raises, and uses what it returns unchecked (ending the worker on a wrong shape)."""
    raw = _in_order(
        arq.jobs.deserialize_job_raw,
        "d = deserializer(r)",
        "d['f'], d['a'], d['k'], d['t'], d['et']",
    )
    _in_order(raw, "except Exception as e:", "raise DeserializationError")
    _in_order(
        arq_run_job(),
        "deserialize_job_raw(",
        "except SerializationError as e:",
        "return await job_failed(e)",
        "self.functions[function_name]",
        "enqueue_job_try > job_try",
        "ms_to_datetime(enqueue_time_ms)",
    )


def test_the_keys_arq_keeps_per_job_are_the_ones_the_worker_reads_before_a_claim() -> None:
    """`malformed` reads each key arq keeps for a job, and knows what arq writes in each: a new
    per-job key, or a new read or write of one, is a value it does not check yet."""
    prefixes = {
        value for name, value in vars(arq.constants).items() if name.endswith("_key_prefix")
    }
    assert prefixes == set(JOB_KEY_PREFIXES)
    assert arq.constants.abort_jobs_ss == "arq:abort"
    _in_order(
        arq.worker.Worker.start_jobs,
        "job_id = job_id_b.decode()",
        "await pipe.exists(in_progress_key)",
        "await pipe.zscore(self.queue_name, job_id)",
        "if ongoing_exists or not score",
        f"pipe.psetex(in_progress_key, int(self.in_progress_timeout_s * 1000), {IN_PROGRESS_MARK!r})",
        "self.run_job(job_id, int(score))",
    )
    run = _in_order(
        arq_run_job(),
        "pipe.get(job_key_prefix + job_id)",
        "pipe.incr(retry_key_prefix + job_id)",
        "pipe.expire(retry_key_prefix + job_id, 88400)",
        "if self.allow_abort_jobs:",
        "pipe.zrem(abort_jobs_ss, job_id)",
    )
    assert "result_key_prefix" not in run, "arq's run now reads a result: check it"
    assert "keep_in_progress" in inspect.getsource(arq.worker.Worker.finish_job)
    _in_order(
        arq.worker.Worker.finish_failed_job,
        "retry_key_prefix + job_id",
        "in_progress_key_prefix + job_id",
        "job_key_prefix + job_id",
        "tr.zrem(abort_jobs_ss, job_id)",
        "tr.zrem(self.queue_name, job_id)",
    )


def test_the_poll_reads_due_ids_and_hands_them_to_start_jobs() -> None:
    """PmdWorker reads a job's values in start_jobs, catches arq's errors there and in run_job,
    and tidies the queue in _poll_iteration: true while arq's poll reads the queue's due ids
    (bytes) there and starts them through start_jobs."""
    _in_order(
        arq.worker.Worker._poll_iteration,
        "job_ids = await self.pool.zrangebyscore(",
        "max=now",
        "await self.start_jobs(job_ids)",
        "t.result()",
        "await self.heart_beat()",
    )
    assert "await self._poll_iteration()" in inspect.getsource(arq.worker.Worker.main)
    init = inspect.getsource(arq.worker.Worker.__init__)
    assert "self.in_progress_timeout_s = (max_timeout or 0) + 10" in init, init
    assert "self.queue_read_limit = " in init, init


async def _noop(ctx: dict[str, Any]) -> None:
    return None


async def test_the_arq_command_makes_its_worker_by_the_names_the_adapter_replaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """arq_command_runs_pmd_worker: after importing the settings, arq's cli makes and runs its
    Worker by calling `run_worker` (with --watch, `create_worker`) by arq.cli's own names, and
    arq's versions of both build arq's Worker from `get_kwargs`, which the adapter's do too;
    `--check` makes no Worker."""
    cli = arq.cli.cli.callback
    assert cli is not None
    _in_order(
        cli,
        "import_string(worker_settings)",
        "if check:",
        "exit(check_health(worker_settings_))",
        "run_worker(worker_settings_, **kwargs)",
    )
    assert "create_worker(worker_settings)" in inspect.getsource(arq.cli.watch_reload)
    assert "run_worker" in cli.__code__.co_names and cli.__globals__ is vars(arq.cli)
    assert "create_worker" in arq.cli.watch_reload.__code__.co_names
    assert "Worker(" not in inspect.getsource(arq.worker.check_health)
    _in_order(
        arq.worker,  # the file: sentry-sdk may have wrapped create_worker
        "def create_worker(settings_cls: 'WorkerSettingsType', **kwargs: Any) -> Worker:",
        "return Worker(**{**get_kwargs(settings_cls), **kwargs})",
        "def run_worker(settings_cls: 'WorkerSettingsType', **kwargs: Any) -> Worker:",
        "worker = create_worker(settings_cls, **kwargs)",
        "worker.run()",
        "return worker",
    )

    ran: list[arq.worker.Worker] = []
    monkeypatch.setattr(PmdWorker, "run", lambda self: ran.append(self))
    for name in ("run_worker", "create_worker"):  # put back arq's after the test
        monkeypatch.setattr(arq.cli, name, getattr(arq.cli, name))
    arq_command_runs_pmd_worker()
    settings = {"functions": [func(_noop, name="noop")], "max_jobs": 3, "not_arq_s": 1}
    named = vars(arq.cli)
    worker = named["run_worker"](settings, burst=True, handle_signals=False)
    assert type(worker) is PmdWorker and ran == [worker]
    assert (worker.max_jobs, worker.burst, list(worker.functions)) == (3, True, ["noop"])
    assert type(named["create_worker"](settings, handle_signals=False)) is PmdWorker

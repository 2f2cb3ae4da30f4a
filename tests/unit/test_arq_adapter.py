"""What pmd_service/jobs/arq_adapter.py and core/job_codec.py rely on in arq, checked against
the arq installed: each test fails the day arq changes it, so an upgrade re-reads them first."""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

import arq.cli
import arq.jobs
import arq.worker

from pmd_service.jobs.arq_adapter import ARQ_VERSION, ArqOptions


def arq_run_job() -> Any:
    """arq's own Worker.run_job: sentry-sdk's arq integration, once a test has set it up in this
    process, puts a wrapper in its place that holds arq's in its closure."""
    function = arq.worker.Worker.run_job
    while not function.__module__.startswith("arq."):
        cells = [cell.cell_contents for cell in function.__closure__ or ()]
        function = next(c for c in cells if inspect.isfunction(c) and c.__name__ == "run_job")
    return function


def _in_order(source: str, *parts: str) -> bool:
    at = 0
    for part in parts:
        found = source.find(part, at)
        if found < 0:
            return False
        at = found + len(part)
    return True


def test_the_installed_arq_is_the_one_the_adapter_was_read_from() -> None:
    assert version("arq") == ARQ_VERSION, "re-read jobs/arq_adapter.py against this arq"


def test_a_claim_takes_its_slot_before_watching_and_frees_it_only_around_exec() -> None:
    """PmdWorker.start_jobs gives the slot back on a WatchError from the reads after WATCH:
    true only while arq takes the slot first and catches WatchError around EXEC alone."""
    source = inspect.getsource(arq.worker.Worker.start_jobs)
    assert _in_order(
        source,
        "await self.sem.acquire()",
        "self.job_counter = self.job_counter + 1",
        "await pipe.watch(",
        "await pipe.exists(",
        "try:",
        "await pipe.execute()",
        "except (ResponseError, WatchError):",
        "self.job_counter = self.job_counter - 1",
        "self.sem.release()",
    ), source
    assert source.count("WatchError") == 1, "arq now handles WatchError itself: drop the override"


def test_the_arq_command_reads_the_options_through_items_after_its_logging() -> None:
    """ArqOptions.items takes the log lines back: arq must import WorkerSettings, then set up
    its logging, then read the options as a dict's items."""
    cli = inspect.getsource(arq.cli.cli.callback)  # type: ignore[arg-type]
    assert _in_order(cli, "import_string(worker_settings)", "dictConfig(", "run_worker("), cli
    kwargs = inspect.getsource(arq.worker.get_kwargs)
    assert "isinstance(settings_cls, dict)" in kwargs and "d.items()" in kwargs, kwargs
    taken = []

    class Watched(ArqOptions):
        def items(self):  # type: ignore[no-untyped-def]
            taken.append(True)
            return super().items()

    got: dict[str, object] = dict(arq.worker.get_kwargs(Watched(max_jobs=3)))
    assert got == {"max_jobs": 3}
    assert taken == [True]


def test_a_scheduled_run_is_named_by_its_time_and_a_start_up_run_by_the_worker_s() -> None:
    """PmdWorker.made_by_scheduler knows arq's cron runs by their ids: `{name}:{ms}` of the
    run's time, a start-up run's time being the `n` run_cron was given; a job's id reaches
    the function in its ctx."""
    cron = inspect.getsource(arq.worker.Worker.run_cron)
    assert _in_order(
        cron,
        "if cron_job.run_at_startup:",
        "cron_job.next_run = n",
        "job_id = f'{cron_job.name}:{to_unix_ms(cron_job.next_run)}' if cron_job.unique",
        "_job_id=job_id",
    ), cron
    run = inspect.getsource(arq_run_job())
    assert _in_order(run, "'job_id': job_id", "function.coroutine(ctx, *args, **kwargs)"), run


def test_the_job_deserializer_s_errors_fail_the_job_and_its_fields_are_read_unchecked() -> None:
    """job_codec.deserialize checks the fields' shape: arq fails the job when the deserializer
    raises, and uses what it returns unchecked (ending the worker on a wrong shape)."""
    raw = inspect.getsource(arq.jobs.deserialize_job_raw)
    assert _in_order(raw, "d = deserializer(r)", "d['f'], d['a'], d['k'], d['t'], d['et']")
    assert _in_order(raw, "except Exception as e:", "raise DeserializationError"), raw
    run = inspect.getsource(arq_run_job())
    assert _in_order(
        run,
        "deserialize_job_raw(",
        "except SerializationError as e:",
        "return await job_failed(e)",
        "self.functions[function_name]",
        "enqueue_job_try > job_try",
        "ms_to_datetime(enqueue_time_ms)",
    ), run

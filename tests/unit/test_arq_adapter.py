"""What pmd_service/jobs/arq_adapter.py relies on in arq, checked against the arq installed:
each test fails the day arq changes it, so an upgrade re-reads the adapter first."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import arq.cli
import arq.worker

from pmd_service.jobs.arq_adapter import ARQ_VERSION, ArqOptions


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

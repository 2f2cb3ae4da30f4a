"""The export's job kind: what the shared driver needs to claim an export, build its parts and
tell the user, and what the sweep and the cleanup do with its rows. An export runs for as long
as its parts take; a run taken over keeps every part already published."""

from __future__ import annotations

from ..core.settings import Settings
from ..jobs.driver import job_function
from ..jobs.kind import Email, Expiring, JobKind, Upkeep
from .job_run import ExportRun
from .job_sql import SQL_CLAIM, SQL_EXPIRE, SQL_PLAN_EXPIRE, SQL_PLAN_PURGE, SQL_PURGE, TABLE
from .mail import SQL_EXPORT_EMAILS_OWED, send_export_email
from .queue import QUEUE
from .recurring import start_due_exports
from .restore import RESTORE_CHECKS


def _cooldown(settings: Settings) -> tuple[object, ...]:
    return (float(settings.export_cooldown_seconds),)


# Each part takes one of the worker's export slots (exports/job_run.py): no attempt scope.
EXPORT = JobKind(
    label="export",
    noun="export",
    table=TABLE,
    sql_claim=SQL_CLAIM,
    start=ExportRun,
    queue=QUEUE,
    upkeep=Upkeep(
        # As for BDRs: no export blocks a new one for ever, one whose worker is gone is taken
        # back within a minute or so of its heartbeat stopping.
        sweep_batch=100,
        expiring=Expiring(
            SQL_PLAN_EXPIRE,
            SQL_PLAN_PURGE,
            SQL_EXPIRE,
            SQL_PURGE,
            "export_parts_expired",
            purge_args=_cooldown,
        ),
        restore_checks=RESTORE_CHECKS,
        swept=start_due_exports,  # recurring exports that are due
    ),
    email=Email(SQL_EXPORT_EMAILS_OWED, send_export_email),
)

process_export = job_function(EXPORT)

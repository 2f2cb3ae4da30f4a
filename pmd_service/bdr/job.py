"""The BDR's job kind: what the shared driver needs to claim a BDR, build its one ZIP, publish
it atomically and tell the user, and what the sweep and the cleanup do with its rows."""

from __future__ import annotations

from arq.connections import ArqRedis

from ..jobs.context import WorkerState
from ..jobs.driver import job_function
from ..jobs.kind import Email, Expiring, JobKind, Upkeep
from .job_run import Run
from .job_sql import (
    SQL_ANNOUNCE_LEFT,
    SQL_CLAIM,
    SQL_EXPIRE,
    SQL_PLAN_EXPIRE,
    SQL_PLAN_PURGE,
    SQL_PURGE,
    TABLE,
)
from .mail import SQL_EMAILS_OWED, send_bdr_email
from .queue import QUEUE
from .restore import RESTORE_CHECKS


async def _announce_left(st: WorkerState, redis: ArqRedis) -> int:
    await st.pool.execute(SQL_ANNOUNCE_LEFT, float(st.settings.job_pending_grace_seconds))
    return 0


BDR = JobKind(
    label="BDR",
    noun="download",
    table=TABLE,
    sql_claim=SQL_CLAIM,
    start=Run,
    queue=QUEUE,
    upkeep=Upkeep(
        sweep_batch=500,
        expiring=Expiring(SQL_PLAN_EXPIRE, SQL_PLAN_PURGE, SQL_EXPIRE, SQL_PURGE, "expired"),
        restore_checks=RESTORE_CHECKS,
        swept=_announce_left,  # a request its server did not announce
    ),
    email=Email(SQL_EMAILS_OWED, send_bdr_email),
    attempt_scope=WorkerState.building_bdr,  # the exports' parts wait while it is built
)

process_bdr = job_function(BDR)

"""The BDR's job: one claimed run, of one ZIP (archive.py), and its kind."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

from arq.connections import ArqRedis

from ...core.codes import Code
from ...host.mentions import resolve_ahead
from ...jobs.context import WorkerState
from ...jobs.driver import job_function
from ...jobs.kind import Email, Expiring, JobKind, RowRun, Settled, Skipped, Upkeep, job_owner
from ...zipbuild.content import plan_artworks
from ...zipbuild.working_files import Wanted
from . import job_sql
from .archive import BdrZip
from .mail import SQL_EMAILS_OWED, send_bdr_email
from .restore_checks import RESTORE_CHECKS

log = logging.getLogger(__name__)


class Run(RowRun):
    """One claimed run of one BDR: its one archive."""

    async def fail(self, message: str, code: Code, skipped: Skipped) -> bool:
        failed = {"message": message, "skipped": skipped, "code": code}
        return await self.pool.fetchrow(*job_sql.SQL_FAILED.bind(self.owned | failed)) is not None

    async def archives(self) -> AsyncGenerator[BdrZip, Settled]:
        claim = self.claim
        user = await job_owner(self.pool, claim["user_id"], "download")
        user_sqid = user["public_sqid"] or self.st.public_ids.encode(claim["user_id"])
        wanted = Wanted(layers=claim["include_layers"])
        plan = await plan_artworks(
            self.pool, claim["user_id"], claim["post_ids"], self.st.public_ids, wanted
        )
        # Resolved while the artworks are written: only the JSON files after them need it.
        mentions = resolve_ahead(
            self.pool,
            [a.description for a in plan.artworks],
            [a.post_id for a in plan.artworks] if claim["include_comments"] else [],
        )
        try:
            yield BdrZip(self, plan, user["handle"], user_sqid, mentions)
        finally:
            mentions.cancel()  # a build that stopped before its JSON files never waited for it

    async def finish(self, last: Settled | None) -> None:
        if last is not None:  # its one ZIP
            log.info(
                "BDR %s ready: %d artworks, %d skipped, %d bytes",
                self.id,
                len(last.result.added),
                len(last.skipped),
                last.result.size,
            )

    def finished(self, outcome: str, seconds: float, last: Settled | None) -> None:
        result = last.result if last is not None and outcome != "retry" else None
        self.st.metrics.finished(outcome, seconds, result)


async def _announce_left(st: WorkerState, redis: ArqRedis) -> int:
    grace = {"grace": float(st.settings.job_pending_grace_seconds)}
    await st.pool.execute(*job_sql.SQL_ANNOUNCE_LEFT.bind(grace))
    return 0


BDR = JobKind(
    label="BDR",
    table=job_sql.TABLE,
    sql_claim=job_sql.SQL_CLAIM,
    start=Run,
    queue=job_sql.QUEUE,
    upkeep=Upkeep(
        sweep_batch=500,
        expiring=Expiring(*job_sql.EXPIRY, "expired"),
        restore_checks=RESTORE_CHECKS,
        swept=_announce_left,  # a request its server did not announce
    ),
    email=Email(SQL_EMAILS_OWED, send_bdr_email),
    attempt_scope=WorkerState.building_bdr,  # the exports' parts wait while it is built
)

process_bdr = job_function(BDR)

"""The export's job: one claimed run, a ZIP for each part (archive.py), and its kind."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import asyncpg

from ...core.codes import Code
from ...jobs.driver import job_function
from ...jobs.failures import PermanentError
from ...jobs.kind import Email, Expiring, JobKind, RowRun, Settled, Skipped, Upkeep, job_owner
from ...zipbuild.build import BuildCancelled
from ...zipbuild.content import skipped_entries
from ...zipbuild.entry_names import post_sqid
from . import job_sql
from .activitypub import start_archive_part
from .archive import ExportPart, mark_started, start_part
from .bag import BagPlace
from .incremental import removed
from .job_sql import SQL_ADD_PART, SQL_FAILED, SQL_LOCK_OWNED, SQL_PARTS, SQL_PLANNED, SQL_READY
from .mail import SQL_EXPORT_EMAILS_OWED, send_export_email
from .plan import PER_PART, PlannedPart, plan_parts
from .recurring import start_due_exports
from .restore_checks import RESTORE_CHECKS
from .schemas import ACTIVITYPUB

log = logging.getLogger(__name__)


class ExportRun(RowRun):
    """One claimed run of one export: an archive per part not yet published."""

    added = 0  # artworks in the parts published so far (this run's and earlier ones')
    done = 0  # artworks the published parts went through (added or skipped)
    count = 0  # its parts

    async def fail(self, message: str, code: Code, skipped: Skipped) -> bool:
        """The parts' rows keep what they left out: the export's `skipped` is theirs."""
        failed = {"message": message, "days": self.st.settings.export_expiry_days, "code": code}
        return await self.pool.fetchrow(*SQL_FAILED.bind(self.owned | failed)) is not None

    def finished(self, outcome: str, seconds: float, last: Settled | None) -> None:
        log.info("export %s: %s after %.1f s", self.id, outcome, seconds)

    async def archives(self) -> AsyncGenerator[ExportPart, Settled]:
        claim = self.claim
        user = await job_owner(self.pool, claim["user_id"], "export")
        parts = await self.pool.fetch(*SQL_PARTS.bind(self.owned))
        if not parts:
            parts = await self._plan()
        self.count = count = len(parts)
        # An incremental export whose only news is what is gone: its part has no artwork.
        self.only_removals = claim["follows_id"] is not None and not any(
            p["post_ids"] for p in parts
        )
        for part in parts:
            if part["status"] == "ready":
                self.added += part["artwork_count"]
                # An entry naming a `file` (a palette) is of an artwork already counted.
                left_out = [s for s in part["skipped"] if "file" not in s]
                self.done += part["artwork_count"] + len(left_out)
        start = start_archive_part if claim["layout"] == ACTIVITYPUB else start_part
        follows = claim["follows_id"], claim["follows_started_at"]
        for part in parts:
            if part["status"] != "ready":
                place = BagPlace(self.id, part["number"], count, user["handle"], *follows)
                async with self.st.export_slots:
                    await mark_started(self, place)
                    archive = await start(self, place, part["post_ids"])
                    try:
                        settled = yield archive
                    finally:
                        archive.mentions.cancel()  # a build that stopped early never waited
                    self._published(archive, settled)

    def _published(self, part: ExportPart, settled: Settled) -> None:
        """A part published: counted, and the run's attempts start again."""
        plan, place = part.plan, part.place
        added = len(settled.result.added) + len(part.listed_only)
        self.added += added
        self.done += len(plan.artworks) + len(plan.skipped)
        self.attempts = 1
        log.info(
            "export %s: part %d of %d ready, %d artworks, %d bytes",
            self.id,
            place.number,
            place.count,
            added,
            settled.result.size,
        )

    async def finish(self, last: Settled | None) -> None:
        if not self.added and not self.only_removals:
            raise PermanentError(
                "None of the artworks could be added (deleted or missing their file since the "
                "export was asked for); an export without artworks is not made.",
                Code.NO_POSTS,
            )
        days = {"days": self.st.settings.export_expiry_days}
        if await self.pool.fetchval(*SQL_READY.bind(self.owned | days)) is None:
            raise BuildCancelled
        log.info("export %s ready: %d parts, %d artworks", self.id, self.count, self.added)

    async def _plan(self) -> list[asyncpg.Record]:
        claim = self.claim
        base = claim["base_post_ids"]
        planned = await plan_parts(self.st, claim, bag=claim["layout"] != ACTIVITYPUB)
        planned_ids = [pid for p in planned for pid in p.post_ids]
        gone: list[dict[str, Any]] = []
        covered = planned_ids
        if base is not None:  # incremental: the posts it follows still there are kept too
            rows = await removed(self.pool, claim["user_id"], base)
            ids = self.st.public_ids
            sqids = {r["post_id"]: post_sqid(r["public_sqid"], r["post_id"], ids) for r in rows}
            gone = skipped_entries([(r["post_id"], r["reason"]) for r in rows], sqids)
            gone_ids = {g["post_id"] for g in gone}
            covered = sorted({*planned_ids, *(b for b in base if b not in gone_ids)})
        if not planned and gone:
            planned = [PlannedPart([], PER_PART)]  # a part to say what is gone
        if not planned:
            raise PermanentError(
                "Nothing changed since the export this one follows started."
                if base is not None
                else "There is no artwork to export any more.",
                Code.NO_POSTS,
            )
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(*SQL_LOCK_OWNED.bind(self.owned)) is None:
                raise BuildCancelled
            await conn.executemany(
                SQL_ADD_PART,
                [(self.id, n, p.post_ids, p.estimated_bytes) for n, p in enumerate(planned, 1)],
            )
            planned_row = {"count": len(planned_ids), "covered": covered, "removed": gone}
            await conn.execute(*SQL_PLANNED.bind(self.owned | planned_row))
            parts: list[asyncpg.Record] = await conn.fetch(*SQL_PARTS.bind(self.owned))
        log.info("export %s planned: %d parts", self.id, len(parts))
        return parts


# Each part takes one of the worker's export slots: no attempt scope.
EXPORT = JobKind(
    label="export",
    table=job_sql.TABLE,
    sql_claim=job_sql.SQL_CLAIM,
    start=ExportRun,
    queue=job_sql.QUEUE,
    upkeep=Upkeep(
        sweep_batch=100,
        expiring=Expiring(
            *job_sql.EXPIRY,
            "export_parts_expired",
            purge_args=lambda settings: {"cooldown": float(settings.export_cooldown_seconds)},
        ),
        restore_checks=RESTORE_CHECKS,
        swept=start_due_exports,  # recurring exports that are due
    ),
    email=Email(SQL_EXPORT_EMAILS_OWED, send_export_email),
)

process_export = job_function(EXPORT)

"""The export's job: one claimed run and its parts, its email, its restore checks, its kind."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from ...core.codes import Code
from ...core.settings import Settings
from ...host.mentions import Mentions, resolve_ahead
from ...jobs.context import WorkerState
from ...jobs.driver import job_function
from ...jobs.failures import PermanentError
from ...jobs.kind import (
    Archive,
    Claim,
    Email,
    Expiring,
    JobKind,
    Settled,
    Skipped,
    Upkeep,
    job_owner,
)
from ...jobs.restore import Look, RestoreCheck, email_owed, not_queued
from ...mail.compose import Block, Button, FeatureEmail, Line, Para, Recipient, reason
from ...mail.compose import Email as Message
from ...mail.language import Words
from ...mail.notify import OWED_ROW, EmailTable, takes
from ...storage.zip_names import export_part_names
from ...zipbuild.build import BuildCancelled, BuildResult, FileDigest, Trailing
from ...zipbuild.content import (
    METADATA_ONLY,
    Plan,
    json_files,
    plan_artworks,
    skipped_entries,
)
from ...zipbuild.entry_names import post_sqid
from ...zipbuild.json_files import Extras
from ...zipbuild.working_files import BAG_FOLDERS, Wanted, sorted_out, split
from . import job_sql
from .bag import BagPlace, bag_closing, removed_json
from .gallery import Social, gallery, read_social
from .incremental import added_count, changes, removed
from .job_sql import (
    SQL_ADD_PART,
    SQL_AFTER_PART,
    SQL_FAILED,
    SQL_LOCK_OWNED,
    SQL_PART_READY,
    SQL_PART_STARTED,
    SQL_PARTS,
    SQL_PLANNED,
    SQL_PROGRESS,
    SQL_READY,
    SQL_REMOVED_LIST,
    SQL_TOUCH,
)
from .plan import PER_PART, PlannedPart, plan_parts
from .recurring import start_due_exports
from .schemas import part_filename

if TYPE_CHECKING:
    from ...core.db import Conn

log = logging.getLogger(__name__)


class ExportRun:
    """One claimed run of one export: an archive per part not yet published."""

    def __init__(self, st: WorkerState, claim: Claim):
        self.st = st
        self.pool = st.pool
        self.export_id = claim.id
        self.token = claim.token
        self.claim = claim.row
        self.attempts: int = claim.row["attempts"]
        self.added = 0  # artworks in the parts published so far (this run's and earlier ones')
        self.done = 0  # artworks the published parts went through (added or skipped)
        self.count = 0  # its parts

    async def fail(self, message: str, code: Code, skipped: Skipped) -> bool:
        """The parts' rows keep what they left out: the export's `skipped` is theirs."""
        days = self.st.settings.export_expiry_days
        row = await self.pool.fetchrow(SQL_FAILED, self.export_id, self.token, message, days, code)
        return row is not None

    def finished(self, outcome: str, seconds: float, published: list[Settled]) -> None:
        log.info("export %s: %s after %.1f s", self.export_id, outcome, seconds)

    async def archives(self) -> AsyncGenerator[Archive, Settled]:
        claim = self.claim
        user = await job_owner(self.pool, claim["user_id"], "export")
        parts = await self.pool.fetch(SQL_PARTS, self.export_id)
        if not parts:
            parts = await self._plan()
        self.count = count = len(parts)
        for part in parts:
            if part["status"] == "ready":
                self.added += part["artwork_count"]
                self.done += part["artwork_count"] + len(part["skipped"])
        for part in parts:
            if part["status"] != "ready":
                place = BagPlace(
                    self.export_id,
                    part["number"],
                    count,
                    user["handle"],
                    claim["follows_id"],
                    claim["follows_started_at"],
                )
                async with self.st.export_slots:
                    archive = await self._part(place, part["post_ids"])
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
            self.export_id,
            place.number,
            place.count,
            added,
            settled.result.size,
        )

    async def finish(self, published: list[Settled]) -> None:
        if not self.added and not await self._only_removals():
            raise PermanentError(
                "None of the artworks could be added (deleted or missing their file since the "
                "export was asked for); an export without artworks is not made.",
                Code.NO_POSTS,
            )
        days = self.st.settings.export_expiry_days
        if await self.pool.fetchval(SQL_READY, self.export_id, self.token, days) is None:
            raise BuildCancelled
        log.info("export %s ready: %d parts, %d artworks", self.export_id, self.count, self.added)

    async def _only_removals(self) -> bool:
        """An incremental export whose only news is what is gone: its part has no artwork."""
        parts = await self.pool.fetch(SQL_PARTS, self.export_id)
        return self.claim["follows_id"] is not None and all(not p["post_ids"] for p in parts)

    async def _plan(self) -> list[asyncpg.Record]:
        claim = self.claim
        local = self.st.artwork_store is None and not self.st.settings.artwork_base_url
        base = claim["base_post_ids"]
        planned = await plan_parts(
            self.pool,
            claim["user_id"],
            claim["part_bytes"],
            comments=claim["include_comments"],
            reactions=claim["include_reactions"],
            vault=self.st.settings.vault_path if local else None,
            upscaled=claim["include_upscaled"],
            changed_since=claim["follows_started_at"],
            base=base,
        )
        planned_ids = [pid for p in planned for pid in p.post_ids]
        gone: list[dict[str, Any]] = []
        covered = planned_ids
        if base is not None:  # incremental: the posts it follows still there are kept too
            gone = [
                {
                    "post_id": r["post_id"],
                    "public_sqid": post_sqid(r["public_sqid"], r["post_id"], self.st.public_ids),
                    "reason": r["reason"],
                }
                for r in await removed(self.pool, claim["user_id"], base)
            ]
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
            if await conn.fetchval(SQL_LOCK_OWNED, self.export_id, self.token) is None:
                raise BuildCancelled
            await conn.executemany(
                SQL_ADD_PART,
                [
                    (self.export_id, n, p.post_ids, p.estimated_bytes)
                    for n, p in enumerate(planned, 1)
                ],
            )
            await conn.execute(SQL_PLANNED, self.export_id, len(planned_ids), covered, gone)
            parts: list[asyncpg.Record] = await conn.fetch(SQL_PARTS, self.export_id)
        log.info("export %s planned: %d parts", self.export_id, len(parts))
        return parts

    async def _part(self, place: BagPlace, post_ids: list[int]) -> ExportPart:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(SQL_LOCK_OWNED, self.export_id, self.token) is None:
                raise BuildCancelled
            await conn.execute(SQL_PART_STARTED, self.export_id, place.number)
            await conn.execute(SQL_TOUCH, self.export_id)
        # Every part holds the layers files; the upscaled copies when asked for.
        wanted = Wanted(layers=True, upscaled=self.claim["include_upscaled"], folders=BAG_FOLDERS)
        plan = await plan_artworks(
            self.pool, self.claim["user_id"], post_ids, self.st.public_ids, wanted
        )
        # Decided now, not when planned: a post whose artwork was replaced since carries it.
        post_changes = (
            None
            if place.follows is None
            else await changes(
                self.pool, post_ids, self.claim["follows_started_at"], self.claim["base_post_ids"]
            )
        )
        removals: bytes | None = None
        if place.follows is not None and place.number == 1:  # said once, in the first part
            removals = removed_json(
                place, await self.pool.fetchval(SQL_REMOVED_LIST, self.export_id)
            )
        post_ids = [a.post_id for a in plan.artworks]
        comments = self.claim["include_comments"]
        social = await read_social(
            self.pool, post_ids, comments=comments, reactions=self.claim["include_reactions"]
        )
        # Resolved while the artworks are written: only the JSON files and gallery need it.
        mentions = resolve_ahead(
            self.pool, [a.description for a in plan.artworks], post_ids if comments else []
        )
        return ExportPart(self, place, plan, post_changes, removals, social, mentions)


class ExportPart(Archive):
    """One part of an export: a BagIt bag in a ZIP, its payload under `<bag>/data/`."""

    def __init__(
        self,
        run: ExportRun,
        place: BagPlace,
        plan: Plan,
        post_changes: dict[int, str] | None,
        removals: bytes | None,
        social: Social,
        mentions: concurrent.futures.Future[Mentions],
    ) -> None:
        self.run = run
        self.mentions = mentions
        self.social = social
        self.place = place
        self.plan = plan
        self.post_changes = post_changes
        self.removals = removals
        self.comments: bool = run.claim["include_comments"]
        self.reactions: bool = run.claim["include_reactions"]
        self.prefix = f"{place.name}/data/"
        # BDRs go first: while one is built here, this part waits between two artworks.
        self.gate: threading.Event | None = run.st.bdrs_idle
        export_id, run_name = run.export_id, run.token.hex[:8]
        download = part_filename(export_id, place.number, place.count)
        self.names = export_part_names(export_id, place.number, run_name, download)
        self.header: dict[str, Any] = {
            "export_id": str(export_id),
            "part": place.number,
            "part_count": place.count,
        }
        # The posts listed in metadata.json alone: their files are in the export followed.
        self.listed_only = _metadata_only(plan, post_changes)
        with_files = Plan(
            [a for a in plan.artworks if a.post_id not in self.listed_only],
            plan.skipped,
            plan.sqids,
        )
        self.artworks = with_files.artworks
        if place.follows is not None:
            self.header |= {
                "follows_export_id": str(place.follows),
                "changed_since": place.since,
                "metadata_only_count": len(self.listed_only),
            }
        self.pre_skipped = len(plan.skipped) + len(self.listed_only)
        self.base = run.done
        self.arcnames = with_files.working_arcnames()
        self.artworks_done = with_files.artworks_done()
        self.order = {a.post_id: i for i, a in enumerate(plan.artworks)}

    def trailing(
        self, extras: Extras, added: list[int], skipped: list[tuple[int, str]]
    ) -> list[tuple[str, Trailing]]:
        order = self.order
        posts, post_skips, working = split(added, skipped, self.arcnames)
        listed = sorted([*posts, *self.listed_only], key=lambda p: order.get(p, -1))
        ordered = self.plan.skipped + sorted(post_skips, key=lambda s: order.get(s[0], -1))
        made = json_files(
            self.place.handle,
            self.plan,
            extras,
            listed,
            ordered,
            self.mentions.result(),  # on the build thread: the loop reads them
            self.header,
            working,
            self.post_changes,
        )
        return made if self.removals is None else [*made, ("removed.json", self.removals)]

    def closing(self, files: list[FileDigest]) -> Iterable[tuple[str, bytes]]:
        index = gallery(self.place, self.plan.artworks, self.social, self.mentions.result())
        return bag_closing(self.place, index)(files)

    async def report(self, done: int) -> bool:
        run = self.run
        progress = self.base + self.pre_skipped + self.artworks_done(done)
        return bool(await run.pool.fetchval(SQL_PROGRESS, run.export_id, run.token, progress))

    def settled(self, built: BuildResult) -> Settled:
        result = sorted_out(built, self.arcnames)[0]
        plan, order = self.plan, self.order
        found = sorted(result.skipped, key=lambda s: order.get(s[0], -1))
        return Settled(result, skipped_entries(plan.skipped + found, plan.sqids))

    async def publish(self, conn: Conn, file_path: str, settled: Settled) -> None:
        """The part ready, and the export's progress (a metadata-only post counts as added)."""
        run, plan, result = self.run, self.plan, settled.result
        done = run.done + len(plan.artworks) + len(plan.skipped)
        await conn.execute(
            SQL_PART_READY,
            run.export_id,
            self.place.number,
            file_path,
            result.size,
            result.sha256,
            len(result.added) + len(self.listed_only),
            settled.skipped,
        )
        await conn.execute(
            SQL_AFTER_PART, run.export_id, run.token, done, result.size, settled.skipped
        )


def _metadata_only(plan: Plan, post_changes: dict[int, str] | None) -> set[int]:
    """The artworks of `plan` an incremental export lists without their files."""
    if post_changes is None:
        return set()
    return {a.post_id for a in plan.artworks if post_changes.get(a.post_id) == METADATA_ONLY}


@dataclass(frozen=True)
class ExportMail(Recipient):
    status: str  # "ready" or "failed"
    artwork_count: int
    part_count: int
    total_bytes: int
    expires_at: datetime | None
    error_code: str | None
    # An incremental export: its changes since `changes_since` (null until planned).
    incremental: bool = False
    changes_since: datetime | None = None
    added_count: int | None = None
    changed_count: int | None = None
    removed_count: int = 0


def _write(words: Words, mail: ExportMail) -> Message:
    count = mail.artwork_count
    if mail.status != "ready":
        lines: list[Line] = [("export_failed", {}), reason(mail.error_code)]
        if mail.expires_at is not None:
            lines.append(("export_failed_kept", {"expires": mail.expires_at}))
        body: list[Block] = [Para(*lines), Button("export_failed_button")]
        return Message(words.text("export_failed_subject"), body, "export_why")
    parts = {"parts": mail.part_count, "size": words.size(mail.total_bytes)}
    if mail.incremental and mail.changes_since is not None and mail.added_count is not None:
        changes = {
            "since": mail.changes_since,
            "added": mail.added_count,
            "changed": mail.changed_count or 0,
            "removed": mail.removed_count,
        }
        subject = words.text("export_changes_subject", since=mail.changes_since)
        opening: list[Line] = [("export_changes_ready", changes)]
    else:
        subject = words.text("export_subject", count=count)
        opening = [("export_ready", {"count": count}), ("export_count", {"count": count})]
    body = [Para(*opening, ("export_parts", parts)), Button("export_button")]
    if mail.expires_at is not None:
        body.append(Para(("export_expiry", {"expires": mail.expires_at}), ("export_check", {})))
    else:
        body.append(Para(("export_check", {})))
    return Message(subject, body, "export_why")


# The page's link, never the files': a part is fetched signed in, and checked there.
compose_export = FeatureEmail("export", "export", _write)


# Taken as a BDR's is, to its owner, in the owner's language.
_TAKE_EXPORT_EMAIL = """
UPDATE exports t {take}
FROM users owner
WHERE {take_row} AND owner.id = t.user_id
RETURNING t.email_sent_at AS taken_at, t.request_id, t.id::text AS about, t.status,
          t.total_bytes, t.expires_at, t.error_code, owner.email AS "to", owner.handle,
          {locale} AS locale, coalesce(owner.public_sqid, t.user_sqid, '') AS user_sqid,
          (SELECT count(*) FROM export_parts p WHERE p.export_id = t.id) AS part_count,
          (SELECT coalesce(sum(p.artwork_count), 0) FROM export_parts p
           WHERE p.export_id = t.id AND p.status = 'ready') AS artwork_count,
          t.follows_id IS NOT NULL AS incremental, t.follows_started_at AS changes_since,
          {added} AS added_count, t.artwork_count - {added} AS changed_count,
          jsonb_array_length(t.removed) AS removed_count
"""
SQL_TAKE_EXPORT_EMAIL, SQL_TAKE_EXPORT_EMAIL_IN_ENGLISH = takes(
    _TAKE_EXPORT_EMAIL, "owner", added=added_count("t")
)
EMAIL = EmailTable(
    "export",
    "exports",
    SQL_TAKE_EXPORT_EMAIL,
    SQL_TAKE_EXPORT_EMAIL_IN_ENGLISH,
    ExportMail,
    compose_export,
)
SQL_EXPORT_EMAILS_OWED = EMAIL.sql_emails_owed
send_export_email = EMAIL.send


# What a restore may leave inconsistent: a file gone, unqueued, a schedule overdue, an email owed.
_OWNER = "coalesce(t.user_sqid, '#' || t.user_id) AS user_sqid"
_ROWS = f"SELECT t.id, {_OWNER}, t.status FROM exports t"
_IS = "export {id} of user {user_sqid} is {status}"

SQL_CHECK_READY_PARTS = f"""
SELECT t.id, p.number, {_OWNER}, p.file_path, p.file_size_bytes
FROM export_parts p JOIN exports t ON t.id = p.export_id
WHERE p.status = 'ready' ORDER BY t.created_at, t.id, p.number
"""
SQL_CHECK_RUNNING = f"""
{_ROWS} WHERE t.status IN ('pending', 'processing') ORDER BY t.created_at, t.id
"""
SQL_CHECK_EMAIL_OWED = f"{_ROWS} WHERE {OWED_ROW} ORDER BY t.completed_at, t.id"

SQL_CHECK_SCHEDULES_DUE = """
SELECT s.user_id AS id, coalesce(s.user_sqid, '#' || s.user_id) AS user_sqid,
       s.next_at, s.every_days,
       1 + floor(extract(epoch FROM now() - s.next_at) / (s.every_days * 86400))::int
         AS runs
FROM export_schedules s
WHERE s.cancelled_at IS NULL AND s.remaining > 0 AND s.next_at <= now()
ORDER BY s.next_at, s.user_id
"""

RESTORE_CHECKS: tuple[RestoreCheck, ...] = (
    RestoreCheck(
        "export-part-file-gone",
        SQL_CHECK_READY_PARTS,
        Look.FILE,
        "part {number} of export {id} of user {user_sqid} is ready",
        "its download answers 410 and marks the part expired",
    ),
    not_queued("export-not-queued", SQL_CHECK_RUNNING, _IS, ", keeping its ready parts"),
    RestoreCheck(
        "export-schedule-due",
        SQL_CHECK_SCHEDULES_DUE,
        Look.ROWS,
        "the recurring export of user {user_sqid} (every {every_days} days) was due at "
        "{next_at}: {runs} run(s) missed",
        "the sweep starts one export, not one a run missed, and moves the next run ahead",
    ),
    email_owed("export-email-owed", SQL_CHECK_EMAIL_OWED, _IS),
)


def _cooldown(settings: Settings) -> tuple[object, ...]:
    return (float(settings.export_cooldown_seconds),)


# Each part takes one of the worker's export slots: no attempt scope.
EXPORT = JobKind(
    label="export",
    noun="export",
    table=job_sql.TABLE,
    sql_claim=job_sql.SQL_CLAIM,
    start=ExportRun,
    queue=job_sql.QUEUE,
    upkeep=Upkeep(
        sweep_batch=100,
        expiring=Expiring(
            *job_sql.EXPIRY,
            "export_parts_expired",
            purge_args=_cooldown,
        ),
        restore_checks=RESTORE_CHECKS,
        swept=start_due_exports,  # recurring exports that are due
    ),
    email=Email(SQL_EXPORT_EMAILS_OWED, send_export_email),
)

process_export = job_function(EXPORT)

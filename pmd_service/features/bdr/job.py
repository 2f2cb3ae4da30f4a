"""The BDR's job: one claimed run and its ZIP, its email, its restore checks, its kind."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from arq.connections import ArqRedis

from ...core.codes import Code
from ...host.mentions import Mentions, resolve_ahead
from ...jobs.context import WorkerState
from ...jobs.driver import job_function
from ...jobs.failures import PermanentError, Refused, TransientError, nothing_added
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
from ...jobs.queueing import MAX_ATTEMPTS
from ...jobs.restore import Look, RestoreCheck, email_owed, not_queued
from ...mail.compose import Block, Button, FeatureEmail, Para, Recipient, reason
from ...mail.compose import Email as Message
from ...mail.language import Words
from ...mail.notify import OWED_ROW, EmailTable, takes
from ...storage.budget import human_bytes
from ...storage.zip_names import bdr_zip_names
from ...zipbuild.build import BuildResult, FileDigest, Trailing, sha256sum_lines
from ...zipbuild.content import (
    Plan,
    json_files,
    plan_artworks,
    skipped_entries,
    skipped_file_entries,
)
from ...zipbuild.json_files import Extras
from ...zipbuild.working_files import Wanted, sorted_out, split
from . import job_sql
from .service import download_filename

if TYPE_CHECKING:
    from ...core.db import Conn

log = logging.getLogger(__name__)


def root_manifest(files: list[FileDigest]) -> list[tuple[str, bytes]]:
    """A BDR's `manifest-sha256.txt`: every other file, `sha256sum -c` run where it is unzipped."""
    return [("manifest-sha256.txt", sha256sum_lines(files))]


class Run:
    """One claimed run of one BDR: its one archive."""

    def __init__(self, st: WorkerState, claim: Claim):
        self.st = st
        self.pool = st.pool
        self.bdr_id = claim.id
        self.token = claim.token
        self.claim = claim.row

    @property
    def attempts(self) -> int:
        return int(self.claim["attempts"])

    def in_request_order(
        self, plan: Plan, found_in_build: list[tuple[int, str]]
    ) -> list[tuple[int, str]]:
        order = {pid: i for i, pid in enumerate(self.claim["post_ids"])}
        return sorted(plan.skipped + found_in_build, key=lambda s: order[s[0]])

    async def fail(self, message: str, code: Code, skipped: Skipped) -> bool:
        row = await self.pool.fetchrow(
            job_sql.SQL_FAILED, self.bdr_id, self.token, message, skipped, code
        )
        return row is not None

    async def archives(self) -> AsyncGenerator[Archive, Settled]:
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

    async def finish(self, published: list[Settled]) -> None:
        [zipped] = published
        log.info(
            "BDR %s ready: %d artworks, %d skipped, %d bytes",
            self.bdr_id,
            len(zipped.result.added),
            len(zipped.skipped),
            zipped.result.size,
        )

    def finished(self, outcome: str, seconds: float, published: list[Settled]) -> None:
        result = published[0].result if published and outcome != "retry" else None
        self.st.metrics.finished(outcome, seconds, result)


class BdrZip(Archive):
    """A BDR's ZIP: its artworks, the JSON files, then `manifest-sha256.txt`; no gate."""

    def __init__(
        self,
        run: Run,
        plan: Plan,
        handle: str,
        user_sqid: str,
        mentions: concurrent.futures.Future[Mentions],
    ) -> None:
        self.run = run
        self.plan = plan
        self.handle = handle
        self.mentions = mentions
        self.artworks = plan.artworks
        self.comments: bool = run.claim["include_comments"]
        self.reactions: bool = run.claim["include_reactions"]
        bdr_id, run_name = run.bdr_id, run.token.hex[:8]
        self.names = bdr_zip_names(user_sqid, bdr_id, run_name, download_filename(bdr_id))
        self.cap = run.st.settings.bdr_max_bytes
        self.arcnames = plan.working_arcnames()
        self.artworks_done = plan.artworks_done()

    def trailing(
        self, extras: Extras, added: list[int], skipped: list[tuple[int, str]]
    ) -> list[tuple[str, Trailing]]:
        posts, post_skips, working = split(added, skipped, self.arcnames)
        ordered = self.run.in_request_order(self.plan, post_skips)
        mentions = self.mentions.result()  # on the build thread: the loop reads them
        return json_files(self.handle, self.plan, extras, posts, ordered, mentions, working=working)

    def closing(self, files: list[FileDigest]) -> list[tuple[str, bytes]]:
        return root_manifest(files)

    def over_cap(self, written: int, done: int) -> Exception | None:
        if written <= self.cap:
            return None
        return PermanentError(
            f"This download grew past the limit of {human_bytes(self.cap)} a download "
            f"(over {human_bytes(written)} after {self.artworks_done(done)} of "
            f"{len(self.plan.artworks)} artworks); request fewer artworks at a time.",
            Code.TOO_LARGE,
        )

    async def report(self, done: int) -> bool:
        run = self.run
        still_ours = await run.pool.fetchval(
            job_sql.SQL_PROGRESS,
            run.bdr_id,
            run.token,
            len(self.plan.skipped) + self.artworks_done(done),
        )
        return bool(still_ours)

    def settled(self, built: BuildResult) -> Settled:
        """Raises for a ZIP that must not ship; `skipped` lists what was left out."""
        result, working = sorted_out(built, self.arcnames)
        if result.size > self.cap:
            raise PermanentError(
                f"This download is {human_bytes(result.size)}, past the limit of "
                f"{human_bytes(self.cap)} a download; request fewer artworks at a time.",
                Code.TOO_LARGE,
            )
        run, plan = self.run, self.plan
        skipped = run.in_request_order(plan, result.skipped)
        order = {pid: i for i, pid in enumerate(run.claim["post_ids"])}
        entries = sorted(
            skipped_entries(skipped, plan.sqids) + skipped_file_entries(working, plan.sqids),
            key=lambda entry: order[entry["post_id"]],
        )
        if not result.added:
            raise Refused(nothing_added(skipped), entries)
        if any(why == "fetch_failed" for _, why in skipped) and run.attempts < MAX_ATTEMPTS:
            # Only the last attempt settles for what the artwork server could give.
            error = TransientError("Some artworks could not be fetched from the artwork server.")
            raise Refused(error, entries)
        return Settled(result, entries)

    async def publish(self, conn: Conn, file_path: str, settled: Settled) -> None:
        run, result = self.run, settled.result
        await conn.execute(
            job_sql.SQL_READY,
            run.bdr_id,
            run.token,
            file_path,
            result.size,
            result.sha256,
            settled.skipped,
            run.st.settings.bdr_expiry_days,
        )


@dataclass(frozen=True)
class BdrMail(Recipient):
    status: str  # "ready" or "failed"
    artwork_count: int
    expires_at: datetime | None
    error_code: str | None  # the row's stored reason (core/codes.py)


def _write(words: Words, mail: BdrMail) -> Message:
    count = mail.artwork_count
    if mail.status == "ready":
        body: list[Block] = [
            Para(("bdr_ready", {"count": count}), ("bdr_count", {"count": count})),
            Button("bdr_button"),
        ]
        if mail.expires_at is not None:
            body.append(Para(("bdr_expiry", {"expires": mail.expires_at})))
        return Message(words.text("bdr_subject", count=count), body, "bdr_why")
    body = [Para(("bdr_failed", {}), reason(mail.error_code)), Button("bdr_failed_button")]
    return Message(words.text("bdr_failed_subject"), body, "bdr_why")


compose = FeatureEmail("bdr", "bdr", _write)

# Taken atomically, so only one run sends it, to whoever asked (a moderator too), in their language.
_TAKE_EMAIL = """
UPDATE batch_download_requests t {take}
FROM users asker, users owner
WHERE {take_row}
  AND asker.id = coalesce(t.requested_by, t.user_id) AND owner.id = t.user_id
RETURNING t.email_sent_at AS taken_at, t.request_id, t.id::text AS about, t.status,
          -- A skipped entry naming a `file` (a missing layers file) left its artwork in.
          t.artwork_count - (SELECT count(*) FROM jsonb_array_elements(t.skipped) s
                             WHERE NOT s ? 'file')::int AS artwork_count,
          t.expires_at, t.error_code, asker.email AS "to", asker.handle,
          {locale} AS locale, owner.public_sqid AS user_sqid
"""
SQL_TAKE_EMAIL, SQL_TAKE_EMAIL_IN_ENGLISH = takes(_TAKE_EMAIL, "asker")
EMAIL = EmailTable(
    "BDR", "batch_download_requests", SQL_TAKE_EMAIL, SQL_TAKE_EMAIL_IN_ENGLISH, BdrMail, compose
)
SQL_EMAILS_OWED = EMAIL.sql_emails_owed
send_bdr_email = EMAIL.send


# What a restore may leave inconsistent: a ZIP gone, a request unqueued, an email owed.
_OWNER = "coalesce(u.public_sqid, '#' || t.user_id) AS user_sqid"
_FROM = "FROM batch_download_requests t LEFT JOIN users u ON u.id = t.user_id"
_ROWS = f"SELECT t.id, {_OWNER}, t.status {_FROM}"
_IS = "BDR {id} of user {user_sqid} is {status}"

SQL_CHECK_READY = f"""
SELECT t.id, {_OWNER}, t.file_path, t.file_size_bytes {_FROM}
WHERE t.status = 'ready' ORDER BY t.created_at, t.id
"""
SQL_CHECK_RUNNING = f"""
{_ROWS} WHERE t.status IN ('pending', 'processing') ORDER BY t.created_at, t.id
"""
SQL_CHECK_EMAIL_OWED = f"{_ROWS} WHERE {OWED_ROW} ORDER BY t.completed_at, t.id"

RESTORE_CHECKS: tuple[RestoreCheck, ...] = (
    RestoreCheck(
        "bdr-file-gone",
        SQL_CHECK_READY,
        Look.FILE,
        "BDR {id} of user {user_sqid} is ready",
        "its download answers 410 and marks it expired",
    ),
    not_queued("bdr-not-queued", SQL_CHECK_RUNNING, _IS, " and a worker builds it"),
    email_owed("bdr-email-owed", SQL_CHECK_EMAIL_OWED, _IS),
)


async def _announce_left(st: WorkerState, redis: ArqRedis) -> int:
    await st.pool.execute(job_sql.SQL_ANNOUNCE_LEFT, float(st.settings.job_pending_grace_seconds))
    return 0


BDR = JobKind(
    label="BDR",
    noun="download",
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

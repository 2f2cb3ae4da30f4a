"""The BDR's job kind: claim, build, publish, email, sweep and cleanup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from arq.connections import ArqRedis

from ...core.settings import Settings
from ...jobs.context import WorkerState
from ...jobs.driver import job_function
from ...jobs.kind import Email, Expiring, JobKind, Upkeep
from ...jobs.restore import Look, RestoreCheck, email_owed, not_queued
from ...mail import language
from ...mail.compose import Block, Button, Para, message_id, reason
from ...mail.compose import Email as Message
from ...mail.links import page_link
from ...mail.notify import OWED_ROW, EmailTable, takes
from . import job_sql
from .job_run import Run


@dataclass(frozen=True)
class BdrMail:
    to: str
    handle: str
    user_sqid: str
    bdr_id: str
    status: str  # "ready" or "failed"
    artwork_count: int
    expires_at: datetime | None
    error_code: str | None  # the row's stored reason (core/codes.py)
    request_id: str | None = None  # of the POST that asked for it, for support to trace
    locale: str | None = None  # the recipient's `users.locale` (None: English)


def compose(settings: Settings, mail: BdrMail) -> EmailMessage:
    link = page_link(settings, mail.user_sqid, f"bdr={mail.bdr_id}")
    words = language.words(settings, mail.locale)
    count = mail.artwork_count
    if mail.status == "ready":
        subject = words.text("bdr_subject", count=count)
        body: list[Block] = [
            Para(("bdr_ready", {"count": count}), ("bdr_count", {"count": count})),
            Button("bdr_button"),
        ]
        if mail.expires_at is not None:
            body.append(Para(("bdr_expiry", {"expires": mail.expires_at})))
    else:
        subject = words.text("bdr_failed_subject")
        body = [Para(("bdr_failed", {}), reason(mail.error_code)), Button("bdr_failed_button")]
    email = Message(subject, mail.handle, body, "bdr_why")
    mid = message_id(settings, "bdr", mail.bdr_id)
    return email.message(settings, words, mail.to, link, mid, mail.request_id)


# Taken atomically, so only one run sends it, to whoever asked (a moderator too), in their language.
_TAKE_EMAIL = """
UPDATE batch_download_requests t {take}
FROM users asker, users owner
WHERE {take_row}
  AND asker.id = coalesce(t.requested_by, t.user_id) AND owner.id = t.user_id
RETURNING t.email_sent_at AS taken_at, t.request_id, t.id::text AS bdr_id, t.status,
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

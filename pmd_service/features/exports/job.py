"""The export's job kind: claim, build its parts, email, sweep and cleanup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from ...core.settings import Settings
from ...jobs.driver import job_function
from ...jobs.kind import Email, Expiring, JobKind, Upkeep
from ...jobs.restore import Look, RestoreCheck, email_owed, not_queued
from ...mail import language
from ...mail.compose import Block, Button, Line, Para, message_id, reason
from ...mail.compose import Email as Message
from ...mail.links import page_link
from ...mail.notify import OWED_ROW, EmailTable, takes
from . import job_sql
from .incremental import added_count
from .job_run import ExportRun
from .recurring import start_due_exports


@dataclass(frozen=True)
class ExportMail:
    to: str
    handle: str
    user_sqid: str
    export_id: str
    status: str  # "ready" or "failed"
    artwork_count: int
    part_count: int
    total_bytes: int
    expires_at: datetime | None
    error_code: str | None
    request_id: str | None = None
    locale: str | None = None
    # An incremental export: its changes since `changes_since` (null until planned).
    incremental: bool = False
    changes_since: datetime | None = None
    added_count: int | None = None
    changed_count: int | None = None
    removed_count: int = 0


def compose_export(settings: Settings, mail: ExportMail) -> EmailMessage:
    """The page's link, never the files': a part is fetched signed in, and checked there."""
    link = page_link(settings, mail.user_sqid, f"export={mail.export_id}")
    words = language.words(settings, mail.locale)
    count = mail.artwork_count
    if mail.status == "ready":
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
        body: list[Block] = [Para(*opening, ("export_parts", parts)), Button("export_button")]
        if mail.expires_at is not None:
            body.append(Para(("export_expiry", {"expires": mail.expires_at}), ("export_check", {})))
        else:
            body.append(Para(("export_check", {})))
    else:
        subject = words.text("export_failed_subject")
        lines: list[Line] = [("export_failed", {}), reason(mail.error_code)]
        if mail.expires_at is not None:
            lines.append(("export_failed_kept", {"expires": mail.expires_at}))
        body = [Para(*lines), Button("export_failed_button")]
    email = Message(subject, mail.handle, body, "export_why")
    mid = message_id(settings, "export", mail.export_id)
    return email.message(settings, words, mail.to, link, mid, mail.request_id)


# Taken as a BDR's is, to its owner, in the owner's language.
_TAKE_EXPORT_EMAIL = """
UPDATE exports t {take}
FROM users owner
WHERE {take_row} AND owner.id = t.user_id
RETURNING t.email_sent_at AS taken_at, t.request_id, t.id::text AS export_id, t.status,
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

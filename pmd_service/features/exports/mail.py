"""An export's email, to its owner, once it is ready or failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ...mail.compose import Block, Button, Email, FeatureEmail, Line, Para, Recipient, reason
from ...mail.language import Words
from ...mail.notify import EmailTable, takes
from .incremental import added_count
from .schemas import ACTIVITYPUB


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
    layout: str = "bagit"


def _write(words: Words, mail: ExportMail) -> Email:
    count = mail.artwork_count
    if mail.status != "ready":
        lines: list[Line] = [("export_failed", {}), reason(mail.error_code)]
        if mail.expires_at is not None:
            lines.append(("export_failed_kept", {"expires": mail.expires_at}))
        body: list[Block] = [Para(*lines), Button("export_failed_button")]
        return Email(words.text("export_failed_subject"), body, "export_why")
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
    # How to check a bag: an account archive is no bag, and has no README to say it.
    check: list[Line] = [("export_check", {})] if mail.layout != ACTIVITYPUB else []
    if mail.expires_at is not None:
        body.append(Para(("export_expiry", {"expires": mail.expires_at}), *check))
    elif check:
        body.append(Para(*check))
    return Email(subject, body, "export_why")


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
          jsonb_array_length(t.removed) AS removed_count, t.layout
"""
_TAKES = takes(_TAKE_EXPORT_EMAIL, "owner", added=added_count("t"))
EMAIL = EmailTable("export", "exports", *_TAKES, ExportMail, compose_export)
SQL_TAKE_EXPORT_EMAIL, SQL_EXPORT_EMAILS_OWED = EMAIL.take, EMAIL.sql_emails_owed
send_export_email = EMAIL.send

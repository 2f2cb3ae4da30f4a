"""An export's ready/failed email, taken as a BDR's is: at most once while its sender lives, to
its owner, retried by the sweep if SMTP fails before the message went out or its sender died
(mail/notify.py sends it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from ..core.settings import Settings
from ..mail import language
from ..mail.compose import Block, Button, Email, Line, Para, message_id, reason
from ..mail.links import page_link
from ..mail.notify import EmailTable, takes
from .incremental import added_count


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
    # An incremental export: the changes since the export it follows, which started at
    # `changes_since` (the counts null until its parts are planned).
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
    email = Email(subject, mail.handle, body, "export_why")
    mid = message_id(settings, "export", mail.export_id)
    return email.message(settings, words, mail.to, link, mid, mail.request_id)


# Taken as a BDR's is (bdr/mail.py), to its owner, in the owner's language.
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

"""An export's ready/failed email, taken as a BDR's is: at most once while its sender lives, to
its owner, retried by the sweep if SMTP fails before the message went out or its sender died
(mail/notify.py sends it)."""

from __future__ import annotations

import uuid
from email.message import EmailMessage

import asyncpg

from ..core.db import from_row
from ..core.settings import Settings
from ..mail.compose import ExportMail, compose_export
from ..mail.notify import END_LEASE, OWED, RELEASE, TAKEABLE, EmailTable
from .incremental import added_count

# Its lease ($3 seconds) and the `email_sent_at` that names the take, as a BDR's (bdr/mail.py).
_TAKE_EXPORT_EMAIL = """
UPDATE exports t
SET email_sent_at = now(), email_lease_until = now() + make_interval(secs => $3),
    email_attempts = t.email_attempts + 1
FROM users owner
WHERE t.id = $1 AND t.send_email AND {takeable}
  AND t.status IN ('ready', 'failed') AND t.email_attempts < $2 AND owner.id = t.user_id
RETURNING t.email_sent_at AS taken_at, t.status, t.artwork_count, t.total_bytes,
          t.expires_at, t.error_code, t.request_id, owner.email, owner.handle,
          {locale} AS locale, coalesce(owner.public_sqid, t.user_sqid) AS sqid,
          (SELECT count(*) FROM export_parts p WHERE p.export_id = t.id) AS parts,
          (SELECT coalesce(sum(p.artwork_count), 0) FROM export_parts p
           WHERE p.export_id = t.id AND p.status = 'ready') AS delivered,
          t.follows_id IS NOT NULL AS incremental, t.follows_started_at AS changes_since,
          {added} AS added_count, t.artwork_count - {added} AS changed_count,
          jsonb_array_length(t.removed) AS removed_count
"""
# In the owner's language; on a host without `users.locale`, English (mail/notify.py chooses).
_ADDED = added_count("t")
SQL_TAKE_EXPORT_EMAIL = _TAKE_EXPORT_EMAIL.format(
    takeable=TAKEABLE, locale="owner.locale", added=_ADDED
)
SQL_TAKE_EXPORT_EMAIL_IN_ENGLISH = _TAKE_EXPORT_EMAIL.format(
    takeable=TAKEABLE, locale="NULL::text", added=_ADDED
)
SQL_END_EXPORT_EMAIL_LEASE = f"UPDATE exports {END_LEASE}"
SQL_RELEASE_EXPORT_EMAIL = f"UPDATE exports {RELEASE}"
SQL_EXPORT_EMAILS_OWED = f"SELECT id FROM exports t {OWED}"
EMAIL = EmailTable(
    SQL_TAKE_EXPORT_EMAIL,
    SQL_TAKE_EXPORT_EMAIL_IN_ENGLISH,
    SQL_END_EXPORT_EMAIL_LEASE,
    SQL_RELEASE_EXPORT_EMAIL,
)


async def send_export_email(pool: asyncpg.Pool, settings: Settings, export_id: uuid.UUID) -> bool:
    """True if this call sent it; SMTP failures are left for the sweep, never raised."""

    def message(row: asyncpg.Record) -> EmailMessage:
        mail = from_row(
            ExportMail,
            row,
            to=row["email"],
            user_sqid=row["sqid"] or "",
            export_id=str(export_id),
            artwork_count=row["delivered"],
            part_count=row["parts"],
        )
        return compose_export(settings, mail)

    return await EMAIL.send(pool, settings, export_id, message, f"export {export_id}")

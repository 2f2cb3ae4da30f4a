"""An export's ready/failed email, taken as a BDR's is: at most once while its sender lives, to
its owner, retried by the sweep if SMTP fails before the message went out or its sender died
(mail/notify.py sends it)."""

from __future__ import annotations

import uuid
from functools import partial

import asyncpg

from ..core.logs import request_id_set
from ..core.settings import Settings
from ..mail.compose import ExportMail, compose_export
from ..mail.notify import MAX_EMAIL_ATTEMPTS, OWED, TAKEABLE, ended, lease_seconds, send_taken

# Its lease ($3 seconds) and the `email_sent_at` that names the take, as a BDR's (bdr/mail.py).
SQL_TAKE_EXPORT_EMAIL = f"""
UPDATE exports t
SET email_sent_at = now(), email_lease_until = now() + make_interval(secs => $3),
    email_attempts = t.email_attempts + 1
FROM users owner
WHERE t.id = $1 AND t.send_email AND {TAKEABLE}
  AND t.status IN ('ready', 'failed') AND t.email_attempts < $2 AND owner.id = t.user_id
RETURNING t.email_sent_at AS taken_at, t.status, t.artwork_count, t.total_bytes,
          t.expires_at, t.error_message, t.request_id, owner.email, owner.handle,
          coalesce(owner.public_sqid, t.user_sqid) AS sqid,
          (SELECT count(*) FROM export_parts p WHERE p.export_id = t.id) AS parts,
          (SELECT coalesce(sum(p.artwork_count), 0) FROM export_parts p
           WHERE p.export_id = t.id AND p.status = 'ready') AS delivered
"""
SQL_END_EXPORT_EMAIL_LEASE = """
UPDATE exports SET email_lease_until = NULL
WHERE id = $1 AND email_sent_at = $2 AND email_lease_until > now()
RETURNING id
"""
SQL_RELEASE_EXPORT_EMAIL = """
UPDATE exports SET email_sent_at = NULL, email_lease_until = NULL
WHERE id = $1 AND email_sent_at = $2
"""
SQL_EXPORT_EMAILS_OWED = f"SELECT id FROM exports t {OWED}"


async def send_export_email(pool: asyncpg.Pool, settings: Settings, export_id: uuid.UUID) -> bool:
    """True if this call sent it; SMTP failures are left for the sweep, never raised."""
    row = await pool.fetchrow(
        SQL_TAKE_EXPORT_EMAIL, export_id, MAX_EMAIL_ATTEMPTS, lease_seconds(settings)
    )
    if row is None:
        return False
    mail = ExportMail(
        to=row["email"],
        handle=row["handle"],
        user_sqid=row["sqid"] or "",
        export_id=str(export_id),
        status=row["status"],
        artwork_count=row["delivered"],
        part_count=row["parts"],
        total_bytes=row["total_bytes"],
        expires_at=row["expires_at"],
        error_message=row["error_message"],
        request_id=row["request_id"],
    )
    end_lease = partial(ended, pool, SQL_END_EXPORT_EMAIL_LEASE, export_id, row["taken_at"])
    release = partial(pool.execute, SQL_RELEASE_EXPORT_EMAIL, export_id, row["taken_at"])
    with request_id_set(row["request_id"]):
        return await send_taken(
            settings, compose_export(settings, mail), f"export {export_id}", end_lease, release
        )

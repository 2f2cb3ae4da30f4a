"""An export's ready/failed email, taken as a BDR's is: at most once, to its owner, retried by
the sweep if SMTP fails before the message went out (mail/notify.py sends it)."""

from __future__ import annotations

import uuid
from functools import partial

import asyncpg

from ..core.logs import request_id_set
from ..core.settings import Settings
from ..mail.compose import ExportMail, compose_export
from ..mail.notify import MAX_EMAIL_ATTEMPTS, OWED, send_taken

SQL_TAKE_EXPORT_EMAIL = """
UPDATE exports e
SET email_sent_at = now(), email_attempts = email_attempts + 1
FROM users owner
WHERE e.id = $1 AND e.send_email AND e.email_sent_at IS NULL
  AND e.status IN ('ready', 'failed') AND e.email_attempts < $2 AND owner.id = e.user_id
RETURNING e.status, e.artwork_count, e.total_bytes, e.expires_at, e.error_message,
          e.request_id, owner.email, owner.handle, coalesce(owner.public_sqid, e.user_sqid) AS sqid,
          (SELECT count(*) FROM export_parts p WHERE p.export_id = e.id) AS parts,
          (SELECT coalesce(sum(p.artwork_count), 0) FROM export_parts p
           WHERE p.export_id = e.id AND p.status = 'ready') AS delivered
"""
SQL_RELEASE_EXPORT_EMAIL = "UPDATE exports SET email_sent_at = NULL WHERE id = $1"
SQL_EXPORT_EMAILS_OWED = f"SELECT id FROM exports {OWED}"


async def send_export_email(pool: asyncpg.Pool, settings: Settings, export_id: uuid.UUID) -> bool:
    """True if this call sent it; SMTP failures are left for the sweep, never raised."""
    row = await pool.fetchrow(SQL_TAKE_EXPORT_EMAIL, export_id, MAX_EMAIL_ATTEMPTS)
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
    release = partial(pool.execute, SQL_RELEASE_EXPORT_EMAIL, export_id)
    with request_id_set(row["request_id"]):
        return await send_taken(
            settings, compose_export(settings, mail), f"export {export_id}", release
        )

"""A BDR's ready/failed email: taken at most once, retried by the sweep if SMTP fails before
the message went out (mail/notify.py sends it)."""

from __future__ import annotations

import uuid
from functools import partial

import asyncpg

from ..core.logs import request_id_set
from ..core.settings import Settings
from ..mail.compose import BdrMail, compose
from ..mail.notify import MAX_EMAIL_ATTEMPTS, OWED, send_taken

# Taking the email is the atomic step: of two runs (a repeated job, the sweep) only one gets
# the row back, so a person never receives it twice. It goes to whoever asked (a moderator
# asking on a user's behalf gets it), with the link to the user's posts page.
SQL_TAKE_EMAIL = """
UPDATE batch_download_requests b
SET email_sent_at = now(), email_attempts = email_attempts + 1
FROM users asker, users owner
WHERE b.id = $1 AND b.send_email AND b.email_sent_at IS NULL
  AND b.status IN ('ready', 'failed') AND b.email_attempts < $2
  AND asker.id = coalesce(b.requested_by, b.user_id) AND owner.id = b.user_id
RETURNING b.status,
          -- A skipped entry naming a `file` (a missing layers file) left its artwork in.
          b.artwork_count - (SELECT count(*) FROM jsonb_array_elements(b.skipped) s
                             WHERE NOT s ? 'file')::int AS delivered,
          b.expires_at, b.error_message, b.request_id, asker.email, asker.handle,
          owner.public_sqid
"""
SQL_RELEASE_EMAIL = "UPDATE batch_download_requests SET email_sent_at = NULL WHERE id = $1"
SQL_EMAILS_OWED = f"SELECT id FROM batch_download_requests {OWED}"


async def send_bdr_email(pool: asyncpg.Pool, settings: Settings, bdr_id: uuid.UUID) -> bool:
    """True if this call sent it. SMTP failures are logged and left for the sweep, never raised."""
    row = await pool.fetchrow(SQL_TAKE_EMAIL, bdr_id, MAX_EMAIL_ATTEMPTS)
    if row is None:
        return False
    mail = BdrMail(
        to=row["email"],
        handle=row["handle"],
        user_sqid=row["public_sqid"],
        bdr_id=str(bdr_id),
        status=row["status"],
        artwork_count=row["delivered"],
        expires_at=row["expires_at"],
        error_message=row["error_message"],
        request_id=row["request_id"],
    )
    release = partial(pool.execute, SQL_RELEASE_EMAIL, bdr_id)
    # Sent from the sweep too: the row's id, not the caller's, tags these lines and the email.
    with request_id_set(row["request_id"]):
        return await send_taken(settings, compose(settings, mail), f"BDR {bdr_id}", release)

"""The ready/failed email of a BDR: sent at most once, retried by the sweep if SMTP fails."""

from __future__ import annotations

import logging
import uuid

import asyncpg

from ..mail import BdrMail, compose, send
from ..settings import Settings

log = logging.getLogger(__name__)

MAX_EMAIL_ATTEMPTS = 5

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
RETURNING b.status, b.artwork_count - jsonb_array_length(b.skipped) AS delivered,
          b.expires_at, b.error_message, asker.email, asker.handle, owner.public_sqid
"""
SQL_RELEASE_EMAIL = "UPDATE batch_download_requests SET email_sent_at = NULL WHERE id = $1"
SQL_EMAILS_OWED = f"""
SELECT id FROM batch_download_requests
WHERE send_email AND email_sent_at IS NULL AND status IN ('ready', 'failed')
  AND email_attempts < {MAX_EMAIL_ATTEMPTS}
ORDER BY completed_at LIMIT 100
"""


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
    )
    try:
        await send(settings, compose(settings, mail))
    except Exception as exc:  # any SMTP/network failure: release it for the sweep to retry
        log.warning("email for BDR %s failed: %s; the sweep will retry", bdr_id, exc)
        await pool.execute(SQL_RELEASE_EMAIL, bdr_id)
        return False
    return True


async def send_owed_emails(pool: asyncpg.Pool, settings: Settings) -> int:
    sent = 0
    for row in await pool.fetch(SQL_EMAILS_OWED):
        sent += await send_bdr_email(pool, settings, row["id"])
    return sent

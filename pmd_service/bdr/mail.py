"""A BDR's ready/failed email: taken at most once while its sender lives, retried by the sweep if
SMTP fails before the message went out or its sender died (mail/notify.py sends it)."""

from __future__ import annotations

import uuid
from functools import partial

import asyncpg

from ..core.logs import request_id_set
from ..core.settings import Settings
from ..mail.compose import BdrMail, compose
from ..mail.notify import MAX_EMAIL_ATTEMPTS, OWED, TAKEABLE, ended, lease_seconds, send_taken

# Taking the email is the atomic step: of two runs (a repeated job, the sweep) only one gets
# the row back, so a person never receives it twice. Its lease lasts $3 seconds (mail/notify.py);
# its `email_sent_at` names the take, so that only its own sender ends or releases it. It goes
# to whoever asked (a moderator asking on a user's behalf gets it), with the link to the user's
# posts page.
SQL_TAKE_EMAIL = f"""
UPDATE batch_download_requests t
SET email_sent_at = now(), email_lease_until = now() + make_interval(secs => $3),
    email_attempts = t.email_attempts + 1
FROM users asker, users owner
WHERE t.id = $1 AND t.send_email AND {TAKEABLE}
  AND t.status IN ('ready', 'failed') AND t.email_attempts < $2
  AND asker.id = coalesce(t.requested_by, t.user_id) AND owner.id = t.user_id
RETURNING t.email_sent_at AS taken_at, t.status,
          -- A skipped entry naming a `file` (a missing layers file) left its artwork in.
          t.artwork_count - (SELECT count(*) FROM jsonb_array_elements(t.skipped) s
                             WHERE NOT s ? 'file')::int AS delivered,
          t.expires_at, t.error_message, t.request_id, asker.email, asker.handle,
          owner.public_sqid
"""
# DATA may start (or a send without SMTP has ended): the lease ends, if it still holds.
SQL_END_EMAIL_LEASE = """
UPDATE batch_download_requests SET email_lease_until = NULL
WHERE id = $1 AND email_sent_at = $2 AND email_lease_until > now()
RETURNING id
"""
SQL_RELEASE_EMAIL = """
UPDATE batch_download_requests SET email_sent_at = NULL, email_lease_until = NULL
WHERE id = $1 AND email_sent_at = $2
"""
SQL_EMAILS_OWED = f"SELECT id FROM batch_download_requests t {OWED}"


async def send_bdr_email(pool: asyncpg.Pool, settings: Settings, bdr_id: uuid.UUID) -> bool:
    """True if this call sent it. SMTP failures are logged and left for the sweep, never raised."""
    row = await pool.fetchrow(SQL_TAKE_EMAIL, bdr_id, MAX_EMAIL_ATTEMPTS, lease_seconds(settings))
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
    end_lease = partial(ended, pool, SQL_END_EMAIL_LEASE, bdr_id, row["taken_at"])
    release = partial(pool.execute, SQL_RELEASE_EMAIL, bdr_id, row["taken_at"])
    # Sent from the sweep too: the row's id, not the caller's, tags these lines and the email.
    with request_id_set(row["request_id"]):
        return await send_taken(
            settings, compose(settings, mail), f"BDR {bdr_id}", end_lease, release
        )

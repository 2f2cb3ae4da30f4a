"""The ready/failed email of a BDR: sent at most once, retried by the sweep if SMTP fails
before the message went out (see compose.Attempt for where that line is)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from functools import partial

import asyncpg

from ..core.logs import request_id_set
from ..core.settings import Settings
from .compose import Attempt, BdrMail, ExportMail, PlainAuthRefused, compose, compose_export, send

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
RETURNING b.status,
          -- A skipped entry naming a `file` (a missing layers file) left its artwork in.
          b.artwork_count - (SELECT count(*) FROM jsonb_array_elements(b.skipped) s
                             WHERE NOT s ? 'file')::int AS delivered,
          b.expires_at, b.error_message, b.request_id, asker.email, asker.handle,
          owner.public_sqid
"""
SQL_RELEASE_EMAIL = "UPDATE batch_download_requests SET email_sent_at = NULL WHERE id = $1"
# The rows (BDRs' or exports') whose email is owed, fewer than $1 tries made. A bounded batch
# per sweep: with SMTP timing out, ten sends stay well inside the sweep's time.
_OWED = """
WHERE send_email AND email_sent_at IS NULL AND status IN ('ready', 'failed')
  AND email_attempts < $1
ORDER BY completed_at LIMIT 10
"""
SQL_EMAILS_OWED = f"SELECT id FROM batch_download_requests {_OWED}"


async def send_bdr_email(pool: asyncpg.Pool, settings: Settings, bdr_id: uuid.UUID) -> bool:
    """True if this call sent it. SMTP failures are logged and left for the sweep, never raised."""
    row = await pool.fetchrow(SQL_TAKE_EMAIL, bdr_id, MAX_EMAIL_ATTEMPTS)
    if row is None:
        return False
    # Sent from the sweep too: the row's id, not the caller's, tags these lines and the email.
    with request_id_set(row["request_id"]):
        return await _send(pool, settings, bdr_id, row)


async def _send(
    pool: asyncpg.Pool, settings: Settings, bdr_id: uuid.UUID, row: asyncpg.Record
) -> bool:
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
    return await _send_once(settings, compose(settings, mail), f"BDR {bdr_id}", release)


async def _send_once(
    settings: Settings,
    message: EmailMessage,
    what: str,
    release: Callable[[], Awaitable[object]],
) -> bool:
    """Send a taken email; on a failure before the server could hold it, `release()` gives it
    back to the sweep. True if it was (or may have been) delivered."""
    attempt = Attempt()
    try:
        await send(settings, message, attempt)
    except BaseException as exc:
        if attempt.may_have_delivered(exc):
            # The server may hold it (one that answers 250 after our timeout was sent up to
            # five copies): it stays taken, so at most one copy, and at worst none.
            log.warning(
                "email for %s may have been delivered (%r after DATA); not sent again", what, exc
            )
            if not isinstance(exc, Exception):
                raise
            return True
        # Nothing reached the server (refused, auth, recipient rejected, or an explicit error
        # reply to DATA), or cancelled before DATA (sweep timeout, shutdown): release it for
        # the sweep. Shielded, so a cancellation cannot skip the release and lose the email.
        if isinstance(exc, PlainAuthRefused):
            # The operator's to fix; the sweep tries again (a server may offer STARTTLS again).
            log.error("email for %s not sent: %s; the sweep will retry", what, exc)
        else:
            log.warning("email for %s not sent (%r); the sweep will retry", what, exc)
        released = asyncio.ensure_future(release())
        with contextlib.suppress(BaseException):
            await asyncio.shield(released)
        if not isinstance(exc, Exception):
            raise
        return False
    return True


async def _send_owed(
    pool: asyncpg.Pool,
    settings: Settings,
    sql_owed: str,
    send_one: Callable[[asyncpg.Pool, Settings, uuid.UUID], Awaitable[bool]],
) -> int:
    sent = 0
    for row in await pool.fetch(sql_owed, MAX_EMAIL_ATTEMPTS):
        sent += await send_one(pool, settings, row["id"])
    return sent


async def send_owed_emails(pool: asyncpg.Pool, settings: Settings) -> int:
    return await _send_owed(pool, settings, SQL_EMAILS_OWED, send_bdr_email)


# An export's email, taken as a BDR's is: at most one, to its owner.
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
SQL_EXPORT_EMAILS_OWED = f"SELECT id FROM exports {_OWED}"


async def send_export_email(pool: asyncpg.Pool, settings: Settings, export_id: uuid.UUID) -> bool:
    """True if this call sent it; SMTP failures are left for the sweep, never raised."""
    row = await pool.fetchrow(SQL_TAKE_EXPORT_EMAIL, export_id, MAX_EMAIL_ATTEMPTS)
    if row is None:
        return False
    mail = ExportMail(
        to=row["email"], handle=row["handle"], user_sqid=row["sqid"] or "",
        export_id=str(export_id), status=row["status"], artwork_count=row["delivered"],
        part_count=row["parts"], total_bytes=row["total_bytes"], expires_at=row["expires_at"],
        error_message=row["error_message"], request_id=row["request_id"],
    )  # fmt: skip
    release = partial(pool.execute, SQL_RELEASE_EXPORT_EMAIL, export_id)
    with request_id_set(row["request_id"]):
        return await _send_once(
            settings, compose_export(settings, mail), f"export {export_id}", release
        )


async def send_owed_export_emails(pool: asyncpg.Pool, settings: Settings) -> int:
    return await _send_owed(pool, settings, SQL_EXPORT_EMAILS_OWED, send_export_email)

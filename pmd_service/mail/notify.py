"""A job's ready/failed email, once taken by its kind (bdr/mail.py, exports/mail.py): sent at most
once, released for the sweep if SMTP fails before the message went out (see compose.Attempt for
where that line is)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Protocol

import asyncpg

from ..core.settings import Settings
from .compose import Attempt, PlainAuthRefused, send

log = logging.getLogger(__name__)

MAX_EMAIL_ATTEMPTS = 5

# A row whose email is owed, fewer than $1 tries made.
OWED_ROW = """send_email AND email_sent_at IS NULL AND status IN ('ready', 'failed')
  AND email_attempts < $1"""
# The rows whose email is owed (each kind's `FROM <table>` before it). A bounded batch per
# sweep: with SMTP timing out, ten sends stay well inside the sweep's time.
OWED = f"""
WHERE {OWED_ROW}
ORDER BY completed_at LIMIT 10
"""


class Emailed(Protocol):
    """A kind of row that is emailed once ready or failed."""

    sql_emails_owed: str  # $1 the tries allowed → the ids whose email is owed

    async def send_email(self, pool: asyncpg.Pool, settings: Settings, row_id: uuid.UUID) -> bool:
        """True if this call sent it (it takes the email first: at most one is sent)."""
        ...


async def send_taken(
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
            # The server may hold it, so it stays taken: at most one copy, and at worst none.
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


async def send_owed(pool: asyncpg.Pool, settings: Settings, kind: Emailed) -> int:
    """The sweep's: the emails of `kind` still owed, sent; how many were."""
    sent = 0
    for row in await pool.fetch(kind.sql_emails_owed, MAX_EMAIL_ATTEMPTS):
        sent += await kind.send_email(pool, settings, row["id"])
    return sent

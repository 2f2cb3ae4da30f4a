"""A row's email, taken under a lease, then sent at most once: DATA starts only while the lease
holds and ends it, so a lease that runs out means its sender died before anything reached the
server, and the sweep sends the email again (as one released after SMTP failed before DATA)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from functools import partial
from typing import Generic, TypeVar

import asyncpg

from ..core.db import from_row
from ..core.logs import request_id_set
from ..core.named_sql import Named
from ..core.settings import Settings
from ..host.columns import host_column
from .compose import Attempt, PlainAuthRefused, send

log = logging.getLogger(__name__)
M = TypeVar("M")

MAX_EMAIL_ATTEMPTS = 5
# A whole send gets this many SMTP_TIMEOUTs, so a slow server cannot hold a lease for ever.
SEND_TIMEOUTS = 3

# Whether a row's email may be taken: never taken, released, or its lease ran out before DATA.
TAKEABLE = "(email_sent_at IS NULL OR email_lease_until < now())"

# A take, after a kind's `UPDATE <table> t`: under a lease of `lease` seconds, one try more.
TAKE = """SET email_sent_at = now(), email_lease_until = now() + make_interval(secs => :lease),
    email_attempts = t.email_attempts + 1"""

# Which of a job kind's rows owe an email (`t`: its table), once ready or failed.
JOB_OWES = "t.send_email AND t.status IN ('ready', 'failed')"


def owed_row(owes: str) -> str:
    """A row whose email is owed, fewer than `tries` tries made."""
    return f"{owes} AND {TAKEABLE}\n  AND t.email_attempts < :tries"


# What a take's and an owed row's `tries` are given.
TRIES = {"tries": MAX_EMAIL_ATTEMPTS}


OWED_ROW = owed_row(JOB_OWES)
# The rows whose email is owed per sweep: with SMTP timing out, ten stay inside the sweep's time.
OWED_BATCH = 10
# A take's lease ended, if it still holds (after a kind's `UPDATE <table>`; $2 its `taken_at`).
END_LEASE = """SET email_lease_until = NULL
WHERE id = $1 AND email_sent_at = $2 AND email_lease_until > now()
RETURNING id
"""
# A take given back for the sweep (likewise).
RELEASE = """SET email_sent_at = NULL, email_lease_until = NULL
WHERE id = $1 AND email_sent_at = $2
"""


def send_seconds(settings: Settings) -> float:
    """The bound on one whole send, from connecting to the server's last reply."""
    return SEND_TIMEOUTS * settings.smtp_timeout


def takes(sql: str, recipient: str, owes: str = JOB_OWES, **values: str) -> tuple[Named, Named]:
    """A kind's take (`sql`) in the language of `recipient` (the user's alias), and in English."""
    fill = {"take": TAKE, "take_row": f"t.id = :row AND {owed_row(owes)}", **values}
    return (
        Named(sql.format(locale=f"{recipient}.locale", **fill)),
        Named(sql.format(locale="NULL::text", **fill)),
    )


def lease_seconds(settings: Settings) -> float:
    """How long a taken email stays its sender's: the bounded send plus JOB_STALE_SECONDS."""
    return send_seconds(settings) + settings.job_stale_seconds


class LeaseLost(Exception):
    """The take's lease ran out before DATA: the email is no longer this sender's to send."""


async def _record(write: Callable[[], Awaitable[object]], what: str, outcome: str) -> None:
    """`write()`, shielded from cancellation; if it fails, the lease still ends the take."""

    async def guarded() -> None:
        try:
            await write()
        except Exception as exc:
            log.warning(
                "email for %s %s, but that could not be recorded (%r); the sweep sends it once "
                "its lease runs out",
                what,
                outcome,
                exc,
            )

    await asyncio.shield(asyncio.ensure_future(guarded()))


@dataclass(frozen=True)
class EmailTable(Generic[M]):
    """A row's email, taken from its table (`takes`: `:row`, `:tries`, `:lease`), then sent."""

    label: str  # how a log line names a row ("BDR")
    table: str
    take: Named
    take_in_english: Named
    mail: Callable[..., M]
    compose: Callable[[Settings, M], EmailMessage]
    owes: str = JOB_OWES
    since: str = "completed_at"

    @property
    def sql_emails_owed(self) -> Named:
        """`tries` allowed → the ids whose email is owed."""
        return Named(f"""SELECT id FROM {self.table} t
WHERE {owed_row(self.owes)}
ORDER BY t.{self.since} LIMIT {OWED_BATCH}""")

    async def send(self, pool: asyncpg.Pool, settings: Settings, row_id: uuid.UUID) -> bool:
        """Row `row_id`'s email, taken, then sent, its lease ending just before DATA; True if this
        call sent it, or may have (never raises)."""
        where = (settings.database_url, settings.host_schema)
        # Whether the take may read `users.locale` (else emails go in English).
        locale = await host_column(pool, *where, "users", "locale", "emails go in English")
        take = self.take if locale.readable else self.take_in_english
        taken = await pool.fetchrow(
            *take.bind(TRIES | {"row": row_id, "lease": lease_seconds(settings)})
        )
        if taken is None:
            return False
        taken_at, what = taken["taken_at"], f"{self.label} {row_id}"

        end_lease = partial(pool.fetchval, f"UPDATE {self.table} {END_LEASE}", row_id, taken_at)
        release = partial(pool.execute, f"UPDATE {self.table} {RELEASE}", row_id, taken_at)

        async def lease_ends() -> None:
            if await end_lease() is None:
                raise LeaseLost("its lease ran out before DATA")

        attempt = Attempt(before_data=lease_ends)
        # Sent from the sweep too: the row's id, not the caller's, tags these lines and the email.
        with request_id_set(taken["request_id"]):
            message = self.compose(settings, from_row(self.mail, taken))
            try:
                async with asyncio.timeout(send_seconds(settings)):
                    await send(settings, message, attempt)
            except BaseException as exc:
                delivered = attempt.may_have_delivered(exc)
                if delivered:
                    # The server may hold it, and its lease ended at DATA: at most one copy.
                    log.warning(
                        "email for %s may have been delivered (%r after DATA); not sent again",
                        what,
                        exc,
                    )
                else:
                    # Nothing reached the server, or the send was cut before DATA: release it.
                    if isinstance(exc, PlainAuthRefused):
                        # The operator's to fix; the sweep retries (the server may offer STARTTLS).
                        log.error("email for %s not sent: %s; the sweep will retry", what, exc)
                    else:
                        log.warning("email for %s not sent (%r); the sweep will retry", what, exc)
                    with contextlib.suppress(asyncio.CancelledError):
                        await _record(release, what, "was not sent")
                if not isinstance(exc, Exception):
                    raise
                return delivered
            if not attempt.data_started:  # no SMTP server: logged, or kept in the dev mailbox
                await _record(end_lease, what, "was logged")
            return True

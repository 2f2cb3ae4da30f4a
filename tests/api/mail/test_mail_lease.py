"""A taken email whose sender died before SMTP (a worker SIGKILLed between the take and the send)
is sent once by the sweep after its lease runs out; never while the lease holds, never again once
a send reached DATA, and never by a sender that stalled past its lease. Against real SMTP servers
(aiosmtpd, and a slow one of the test's own), for both kinds that email.

The death is the take's own SQL run with nothing sent after it; the lease running out is the
lease moved into the past.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace

from pmd_service.core.named_sql import Named
from pmd_service.core.settings import Settings
from pmd_service.features.bdr.mail import SQL_TAKE_EMAIL, send_bdr_email
from pmd_service.features.exports.mail import SQL_TAKE_EXPORT_EMAIL, send_export_email
from pmd_service.jobs.context import job_context
from pmd_service.mail.notify import MAX_EMAIL_ATTEMPTS, lease_seconds, send_seconds
from pmd_service.upkeep.sweep import sweep
from support.mailbox import Mailbox
from support.seeding import Factory
from tests.api.mail.test_mail_once import mail_settings
from tests.helpers import ready_owing_email

Client = TestClient[Any, Any]
Send = Callable[[asyncpg.Pool, Settings, uuid.UUID], Coroutine[Any, Any, bool]]


@dataclass(frozen=True)
class Kind:
    table: str
    take: Named  # the kind's SQL that takes the email
    send: Send
    message_id: str  # its Message-ID's local part, before the row's id


BDR = Kind("batch_download_requests", SQL_TAKE_EMAIL, send_bdr_email, "bdr")
EXPORT = Kind("exports", SQL_TAKE_EXPORT_EMAIL, send_export_email, "export")


async def owing(kind: Kind, client: Client, factory: Factory) -> uuid.UUID:
    """A ready row of `kind` that asked for an email, its email not taken yet."""
    owner = await factory.user()
    if kind is BDR:
        return uuid.UUID(await ready_owing_email(client, factory, owner))
    row_id: uuid.UUID = await factory.pool.fetchval(
        "INSERT INTO exports (user_id, user_sqid, status, part_bytes, send_email, artwork_count,"
        " completed_at, expires_at)"
        " VALUES ($1, $2, 'ready', 1048576, true, 1, now(), now() + interval '1 day')"
        " RETURNING id",
        owner.id,
        owner.sqid,
    )
    return row_id


async def taken_by_a_sender_that_dies(
    kind: Kind, pool: asyncpg.Pool, settings: Settings, row_id: uuid.UUID
) -> None:
    """The take, as the kind's send does it first, then nothing: the process is gone."""
    row = await pool.fetchrow(
        *kind.take.bind(
            {"row": row_id, "tries": MAX_EMAIL_ATTEMPTS, "lease": lease_seconds(settings)}
        )
    )
    assert row is not None


async def email_state(kind: Kind, pool: asyncpg.Pool, row_id: uuid.UUID) -> Any:
    return await pool.fetchrow(
        f"SELECT email_sent_at, email_lease_until, email_attempts FROM {kind.table} WHERE id = $1",
        row_id,
    )


async def sweeps(settings: Settings, n: int) -> list[int]:
    """The emails each of `n` sweeps sent."""
    async with job_context(settings) as ctx:
        return [(await sweep(ctx))["emails"] for _ in range(n)]


class Owed(NamedTuple):
    """A ready row of `kind` whose email is owed, not taken yet, and the settings that mail it
    to the test's SMTP server."""

    kind: Kind
    mail: Settings
    row_id: uuid.UUID


@pytest.fixture(params=[BDR, EXPORT], ids=["bdr", "export"])
async def owed(
    request: pytest.FixtureRequest,
    client: Client,
    factory: Factory,
    settings: Settings,
    smtp: Mailbox,
) -> Owed:
    kind: Kind = request.param
    return Owed(kind, mail_settings(settings, smtp), await owing(kind, client, factory))


async def test_an_email_taken_by_a_sender_that_died_is_sent_once_by_the_sweep(
    owed: Owed, factory: Factory, smtp: Mailbox
) -> None:
    kind, mail, row_id = owed
    await taken_by_a_sender_that_dies(kind, factory.pool, mail, row_id)
    await factory.pool.execute(
        f"UPDATE {kind.table} SET email_lease_until = now() - interval '1 second' WHERE id = $1",
        row_id,
    )

    assert await sweeps(mail, 3) == [1, 0, 0]
    assert await kind.send(factory.pool, mail, row_id) is False  # a job run again: nothing
    assert [m["Message-ID"] for m in smtp.messages] == [f"<{kind.message_id}-{row_id}@pmd.test>"]
    row = await email_state(kind, factory.pool, row_id)
    # The dead take and the sweep's: two attempts, and the send that ended holds no lease.
    assert row["email_sent_at"] is not None and row["email_lease_until"] is None
    assert row["email_attempts"] == 2


async def test_an_email_whose_lease_holds_is_not_sent_again(
    owed: Owed, factory: Factory, smtp: Mailbox
) -> None:
    kind, mail, row_id = owed
    await taken_by_a_sender_that_dies(kind, factory.pool, mail, row_id)

    # The lease outlasts the whole bounded send (its sender may still be at it).
    row = await email_state(kind, factory.pool, row_id)
    held = await factory.pool.fetchval("SELECT $1::timestamptz - now()", row["email_lease_until"])
    assert held.total_seconds() > send_seconds(mail)
    assert await sweeps(mail, 2) == [0, 0]
    assert await kind.send(factory.pool, mail, row_id) is False
    assert smtp.messages == []
    assert (await email_state(kind, factory.pool, row_id))["email_attempts"] == 1


async def test_an_email_sent_is_never_sent_again(
    owed: Owed, factory: Factory, smtp: Mailbox
) -> None:
    kind, mail, row_id = owed
    assert await kind.send(factory.pool, mail, row_id) is True
    row = await email_state(kind, factory.pool, row_id)
    assert row["email_sent_at"] is not None and row["email_lease_until"] is None

    # However long ago it was sent.
    await factory.pool.execute(
        f"UPDATE {kind.table} SET email_sent_at = now() - interval '30 days' WHERE id = $1",
        row_id,
    )
    assert await sweeps(mail, 2) == [0, 0]
    assert await kind.send(factory.pool, mail, row_id) is False
    assert len(smtp.messages) == 1


async def test_an_email_only_logged_holds_no_lease(
    client: Client, factory: Factory, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    unset = replace(settings, smtp_host=None, dev_mode=False)
    row_id = await owing(BDR, client, factory)
    assert await send_bdr_email(factory.pool, unset, row_id) is True
    assert "email (SMTP_HOST unset, not sent)" in caplog.text
    row = await email_state(BDR, factory.pool, row_id)
    assert row["email_sent_at"] is not None and row["email_lease_until"] is None


@dataclass
class SlowSmtp:
    """An SMTP server that waits `delay` before each reply, and before its reply to RCPT until
    `hold` is set (the test's moment to act while the send waits)."""

    delay: float = 0.0
    hold: asyncio.Event | None = None
    at_rcpt: asyncio.Event = field(default_factory=asyncio.Event)
    messages: list[bytes] = field(default_factory=list)
    port: int = 0

    async def talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: bytes) -> None:
            await asyncio.sleep(self.delay)
            writer.write(line + b"\r\n")
            await writer.drain()

        try:
            await reply(b"220 slow.test ESMTP")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"RCPT":
                    self.at_rcpt.set()
                    if self.hold is not None:
                        await self.hold.wait()
                if verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    body = bytearray()
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        body += chunk
                    self.messages.append(bytes(body))
                    await reply(b"250 OK")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    await reply(b"250 OK")
        except ConnectionError:
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(server: SlowSmtp) -> AsyncIterator[SlowSmtp]:
    listening = await asyncio.start_server(server.talk, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield server


async def test_a_send_cut_by_its_bound_before_data_is_released_for_the_sweep(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    # Every step answered inside SMTP_TIMEOUT (1 s), but the four before DATA (the greeting,
    # EHLO, MAIL, RCPT) take 3.2 s, past the 3 s bound on the whole send.
    async with serving(SlowSmtp(delay=0.8)) as slow:
        dripping = replace(mail_settings(settings, smtp), smtp_port=slow.port)
        assert send_seconds(dripping) < 4 * slow.delay
        row_id = await owing(BDR, client, factory)
        assert await send_bdr_email(factory.pool, dripping, row_id) is False
    assert slow.messages == []
    row = await email_state(BDR, factory.pool, row_id)
    assert row["email_sent_at"] is None and row["email_lease_until"] is None  # owed again
    assert await sweeps(mail_settings(settings, smtp), 2) == [1, 0]
    assert len(smtp.messages) == 1


async def test_a_sender_that_stalled_past_its_lease_never_starts_data(
    owed: Owed, factory: Factory, smtp: Mailbox
) -> None:
    """Stalled as long as a dead sender, one that wakes up finds the email taken over (the sweep
    sent it): it does not send a second copy."""
    kind, mail, row_id = owed
    async with serving(SlowSmtp(hold=asyncio.Event())) as stalling:
        assert stalling.hold is not None
        slow = replace(mail, smtp_port=stalling.port, smtp_timeout=60.0)
        sending = asyncio.create_task(kind.send(factory.pool, slow, row_id))
        await asyncio.wait_for(stalling.at_rcpt.wait(), 30)  # taken, and before DATA
        await factory.pool.execute(
            f"UPDATE {kind.table} SET email_lease_until = now() - interval '1 second'"
            " WHERE id = $1",
            row_id,
        )
        assert await sweeps(mail, 1) == [1]  # the sweep takes it over and sends it
        stalling.hold.set()
        assert await asyncio.wait_for(sending, 30) is False
    assert stalling.messages == []
    assert len(smtp.messages) == 1
    row = await email_state(kind, factory.pool, row_id)
    # The stalled sender's release did not undo the sweep's send.
    assert row["email_sent_at"] is not None and row["email_lease_until"] is None
    assert await sweeps(mail, 1) == [0]

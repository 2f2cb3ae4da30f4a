"""The ready/failed email against real SMTP servers (aiosmtpd) that misbehave.

A server that stores the message and answers 250 only after the client's timeout was sent the
email again by every sweep (two copies seen, up to five possible). Once DATA is under way a
failure is never retried; before it (refused, recipient rejected), or on an explicit error
reply to DATA, it is. Every attempt carries the same Message-ID, so copies can be told apart
from different emails.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace

from pmd_service.core.settings import Settings
from pmd_service.features.bdr.mail import send_bdr_email
from pmd_service.jobs.context import job_context
from pmd_service.upkeep.sweep import sweep
from support.mailbox import Mailbox
from support.seeding import Factory
from support.stack import free_port
from tests.helpers import (
    eventually,
    fetch_item,
    mailing,
    ready_owing_email,
    request_bdr,
    run_worker,
)

Client = TestClient[Any, Any]


@dataclass
class FaultyMailbox(Mailbox):
    """Keeps what it receives, like the suite's `smtp`, with dials for the faults below."""

    slow_reply: float = 0.0  # after storing a message, wait this long before the 250
    refuse_rcpt: int = 0  # answer 451 to this many RCPTs (a failure before DATA)
    refuse_data: int = 0  # store the message, then answer 451 to this many (an explicit no)
    rcpts: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.rcpts += 1
        if self.refuse_rcpt > 0:
            self.refuse_rcpt -= 1
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)  # stored from here on
        if self.refuse_data > 0:
            self.refuse_data -= 1
            return "451 4.3.0 Try again later"
        if self.slow_reply:
            await asyncio.sleep(self.slow_reply)
        return reply


@pytest.fixture
def faulty_smtp() -> Iterator[FaultyMailbox]:
    with FaultyMailbox() as box:
        yield box


def mail_settings(settings: Settings, box: Mailbox) -> Settings:
    # One second per SMTP reply, so a server "slow" by three seconds is cheap to test.
    return mailing(settings, box, smtp_timeout=1.0, mail_from="PMD <pmd@pmd.test>")


@dataclass
class Mail:
    """A faulty SMTP server and the settings that send to it."""

    box: FaultyMailbox
    settings: Settings


@pytest.fixture
def mail(settings: Settings, faulty_smtp: FaultyMailbox) -> Mail:
    return Mail(faulty_smtp, mail_settings(settings, faulty_smtp))


async def email_row(factory: Factory, bdr_id: str) -> Any:
    return await factory.pool.fetchrow(
        "SELECT email_sent_at, email_lease_until, email_attempts FROM batch_download_requests"
        " WHERE id = $1::uuid",
        bdr_id,
    )


async def test_a_server_answering_after_the_timeout_gets_one_copy(
    client: Client, factory: Factory, mail: Mail, caplog: pytest.LogCaptureFixture
) -> None:
    mail.box.slow_reply = 3.0  # longer than smtp_timeout: the worker gives up waiting
    mailing = mail.settings
    owner = await factory.user("slowmail")
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id], send_email=True)
    await run_worker(mailing)
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"
    assert len(mail.box.messages) == 1

    # Everything that used to send it again: the sweep (every minute), a direct retry.
    async with job_context(mailing) as ctx:
        resent = [(await sweep(ctx))["emails"] for _ in range(3)]
    again = await send_bdr_email(factory.pool, mailing, uuid.UUID(item["id"]))
    assert len(mail.box.messages) == 1
    assert resent == [0, 0, 0] and again is False
    row = await email_row(factory, item["id"])
    assert row["email_sent_at"] is not None and row["email_attempts"] == 1  # counted as sent
    assert row["email_lease_until"] is None  # its send ended: not even its lease makes it owed
    assert "may have been delivered" in caplog.text and item["id"] in caplog.text


async def test_cancelled_once_data_is_under_way_is_not_sent_again(
    client: Client, factory: Factory, settings: Settings, faulty_smtp: FaultyMailbox
) -> None:
    # No timeout first: the send is still waiting for the reply when it is cancelled below.
    faulty_smtp.slow_reply = 3.0
    mailing = replace(mail_settings(settings, faulty_smtp), smtp_timeout=30.0)
    bdr_id = await ready_owing_email(client, factory, await factory.user())
    task = asyncio.create_task(send_bdr_email(factory.pool, mailing, uuid.UUID(bdr_id)))

    async def stored() -> bool:  # the server has the message: the shutdown comes now
        return bool(faulty_smtp.messages)

    await eventually(stored, 30, "the message reaching the server")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await email_row(factory, bdr_id)
    # Not owed again, the lease cleared despite the cancellation: the sweep leaves it alone.
    assert row["email_sent_at"] is not None and row["email_lease_until"] is None
    async with job_context(mailing) as ctx:
        assert (await sweep(ctx))["emails"] == 0
    assert len(faulty_smtp.messages) == 1


async def test_message_id_is_the_same_on_every_attempt(
    client: Client, factory: Factory, mail: Mail, caplog: pytest.LogCaptureFixture
) -> None:
    mail.box.refuse_rcpt = 1  # attempt 1 fails before DATA: nothing stored
    mail.box.refuse_data = 1  # attempt 2 stored, then refused in so many words
    mailing = mail.settings
    owner = await factory.user()
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id], send_email=True)
    await run_worker(mailing)
    assert mail.box.rcpts == 1 and mail.box.messages == []
    assert (await email_row(factory, item["id"]))["email_sent_at"] is None  # owed again

    async with job_context(mailing) as ctx:
        assert (await sweep(ctx))["emails"] == 0  # the explicit 451: owed again
        assert (await sweep(ctx))["emails"] == 1
        assert (await sweep(ctx))["emails"] == 0
    assert "may have been delivered" not in caplog.text
    row = await email_row(factory, item["id"])
    assert row["email_sent_at"] is not None and row["email_attempts"] == 3
    # The refused copy and the delivered one: one Message-ID, derived from the BDR's id.
    assert [m["Message-ID"] for m in mail.box.messages] == [f"<bdr-{item['id']}@pmd.test>"] * 2


async def test_a_refused_connection_is_still_retried(
    client: Client,
    factory: Factory,
    settings: Settings,
    smtp: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    owner = await factory.user()
    post = await factory.post(owner)
    item = await request_bdr(client, owner, [post.id], send_email=True)
    down = replace(mail_settings(settings, smtp), smtp_port=free_port())
    await run_worker(down)
    assert (await email_row(factory, item["id"]))["email_sent_at"] is None
    async with job_context(mail_settings(settings, smtp)) as ctx:
        assert (await sweep(ctx))["emails"] == 1
    assert [m["Message-ID"] for m in smtp.messages] == [f"<bdr-{item['id']}@pmd.test>"]

"""A cleanup policy with `notify` emails its owner after a run that changed something, through
a real SMTP server (aiosmtpd) on real PostgreSQL: one email, in the owner's language, with the
count, the policy's name, the posts page's link to the run and when its undo ends; none for a
run that changed nothing or a policy without `notify`; still one however often the tick and
the sweep come again; and an SMTP server that is down never fails the run."""

from __future__ import annotations

import uuid
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from msgspec.structs import replace

from pmd_service.core.settings import Settings
from pmd_service.features.posts.policies.mail import send_policy_run_email
from pmd_service.features.posts.policies.runs import run_due_policies
from pmd_service.jobs.context import job_context
from pmd_service.mail.language import words
from pmd_service.upkeep.cleanup import daily_cleanup
from pmd_service.upkeep.sweep import sweep
from support.mailbox import Mailbox
from support.seeding import Factory, UserRow
from support.stack import free_port
from tests.api.posts.test_cleanup_policies import (
    OLD,
    POLICIES,
    create,
    due_now,
    gallery,
    hidden,
    policy,
)

Client = TestClient[Any, Any]


def mailing(settings: Settings, smtp: Mailbox) -> Settings:
    return replace(settings, smtp_host=smtp.host, smtp_port=smtp.port, smtp_timeout=2.0)


def plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


async def last_action(pool: asyncpg.Pool, policy_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT id, created_at FROM bulk_actions WHERE policy_id = $1",
        uuid.UUID(policy_id),
    )
    assert row is not None
    return row


async def sweeps(settings: Settings, times: int = 1) -> list[int]:
    """The emails each of `times` sweeps sent."""
    async with job_context(settings) as ctx:
        return [(await sweep(ctx))["emails"] for _ in range(times)]


def says_the_run(
    message: EmailMessage,
    settings: Settings,
    owner: UserRow,
    action: asyncpg.Record,
    locale: str | None,
    ran: str,
    count: int,
    name: str,
) -> None:
    """The email tells, in the owner's copy, what the run did, which policy, until when it can
    be undone, and links the posts page at that run."""
    copy = words(settings, locale)
    text = plain(message)
    assert message["To"] == f"{owner.handle}@example.com"
    assert message["Subject"] == copy.text("policy_subject", name=name)
    assert copy.text(ran, count=count, name=name) in text
    until = action["created_at"] + timedelta(hours=24)
    assert copy.text("policy_undo_until", until=until) in text
    assert f"{settings.base_url}/u/{owner.sqid}/posts?action={action['id']}" in text


async def test_a_scheduled_run_emails_its_owner_once(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    sending = mailing(settings, smtp)
    owner, posts = await gallery(factory)
    made = await create(client, owner, policy(notify=True))
    async with job_context(sending) as ctx:
        assert await run_due_policies(ctx) == 1
        # Sent right after the run; the tick and the sweep coming again send nothing more.
        assert len(smtp.messages) == 1
        assert await run_due_policies(ctx) == 0
    assert await sweeps(sending, 2) == [0, 0]
    action = await last_action(factory.pool, made["id"])
    assert await send_policy_run_email(factory.pool, sending, action["id"]) is False
    assert len(smtp.messages) == 1
    (message,) = smtp.messages
    assert message["Content-Language"] == "en"
    says_the_run(message, sending, owner, action, None, "policy_hid", 3, "Old and quiet")
    assert await hidden(factory.pool, posts) == {"old1", "old2", "old3", "hidden"}


async def test_a_run_asked_for_now_is_emailed_by_the_sweep_in_the_owners_language(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    sending = mailing(settings, smtp)
    owner, _posts = await gallery(factory)
    await factory.pool.execute("UPDATE users SET locale = 'es' WHERE id = $1", owner.id)
    made = await create(client, owner, policy(notify=True, action="delete", name="Viejas"))
    run = await client.post(f"{POLICIES}/{made['id']}/run", headers=owner.auth)
    assert run.status == 200, await run.text()
    assert (await run.json())["run"]["changed_count"] == 4  # the hidden one is deleted too
    assert smtp.messages == []  # a request never waits on SMTP
    assert await sweeps(sending, 3) == [1, 0, 0]
    (message,) = smtp.messages
    assert message["Content-Language"] == "es"
    action = await last_action(factory.pool, made["id"])
    says_the_run(message, sending, owner, action, "es", "policy_deleted", 4, "Viejas")


async def test_a_run_that_changed_nothing_sends_none(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    sending = mailing(settings, smtp)
    owner, _posts = await gallery(factory)
    made = await create(client, owner, policy(notify=True, older_than_days=3650))
    assert made["preview"]["count"] == 0
    async with job_context(sending) as ctx:
        assert await run_due_policies(ctx) == 1
    assert await sweeps(sending) == [0]
    assert smtp.messages == []


async def test_a_policy_without_notify_sends_none(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    sending = mailing(settings, smtp)
    owner, posts = await gallery(factory)
    await create(client, owner, policy())
    async with job_context(sending) as ctx:
        assert await run_due_policies(ctx) == 1
    assert await sweeps(sending) == [0]
    assert smtp.messages == []
    assert await hidden(factory.pool, posts) == {"old1", "old2", "old3", "hidden"}


async def test_smtp_down_never_fails_the_run_and_the_sweep_sends_it_later(
    client: Client, factory: Factory, settings: Settings, smtp: Mailbox
) -> None:
    nowhere = replace(settings, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout=1.0)
    owner, posts = await gallery(factory)
    made = await create(client, owner, policy(notify=True))
    async with job_context(nowhere) as ctx:
        assert await run_due_policies(ctx) == 1
    item = await (await client.get(f"{POLICIES}/{made['id']}", headers=owner.auth)).json()
    assert item["last_run"]["status"] == "ok" and item["last_run"]["changed_count"] == 3
    assert await hidden(factory.pool, posts) == {"old1", "old2", "old3", "hidden"}
    sending = mailing(settings, smtp)
    assert await sweeps(sending, 2) == [1, 0]
    action = await last_action(factory.pool, made["id"])
    says_the_run(smtp.messages[0], sending, owner, action, None, "policy_hid", 3, "Old and quiet")


async def test_an_email_is_owed_within_the_undo_window_and_its_row_goes_a_day_after(
    client: Client,
    factory: Factory,
    settings: Settings,
    smtp: Mailbox,
    worker_ctx: dict[str, Any],
) -> None:
    owner, _posts = await gallery(factory)
    made = await create(client, owner, policy(notify=True))
    nowhere = replace(settings, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout=1.0)
    async with job_context(nowhere) as ctx:
        await run_due_policies(ctx)
    action = (await last_action(factory.pool, made["id"]))["id"]

    async def ran_ago(hours: int) -> None:
        await factory.pool.execute(
            "UPDATE cleanup_policy_runs SET ran_at = now() - make_interval(hours => $2)"
            " WHERE id = $1",
            action,
            hours,
        )

    async def kept() -> bool:
        found = await factory.pool.fetchval(
            "SELECT count(*) FROM cleanup_policy_runs WHERE id = $1", action
        )
        return bool(found)

    # Its undo window over, the email is no longer owed, and the row stays a day more.
    await ran_ago(25)
    assert await sweeps(mailing(settings, smtp)) == [0]
    assert smtp.messages == []
    await daily_cleanup(worker_ctx)
    assert await kept()
    await ran_ago(49)
    await daily_cleanup(worker_ctx)
    assert not await kept()


async def test_a_held_run_emails_its_owner_once_whatever_its_notify(
    client: Client,
    factory: Factory,
    settings: Settings,
    smtp: Mailbox,
    worker_ctx: dict[str, Any],
) -> None:
    sending = mailing(settings, smtp)
    owner, posts = await gallery(factory)
    await factory.pool.execute("UPDATE users SET locale = 'es' WHERE id = $1", owner.id)
    made = await create(client, owner, policy())  # no `notify`
    for _ in range(200):  # far more than the 3 its owner approved
        await factory.post(owner, created_at=OLD)
    async with job_context(sending) as ctx:
        assert await run_due_policies(ctx) == 1
        assert len(smtp.messages) == 1
        # Held again at its next run: its owner was told already.
        await due_now(factory.pool, made["id"])
        assert await run_due_policies(ctx) == 1
    assert await sweeps(sending, 2) == [0, 0]
    assert await hidden(factory.pool, posts) == {"hidden"}
    (message,) = smtp.messages
    copy = words(sending, "es")
    name = "Old and quiet"
    assert message["To"] == f"{owner.handle}@example.com"
    assert message["Subject"] == copy.text("policy_held_subject", name=name)
    text = plain(message)
    assert copy.text("policy_held_hide", count=203, approved=3, name=name) in text
    assert f"{sending.base_url}/u/{owner.sqid}/posts?policy={made['id']}" in text
    # A week on, the daily cleanup removes the hold's row.
    await factory.pool.execute(
        "UPDATE cleanup_policy_holds SET held_at = now() - interval '8 days'"
    )
    await daily_cleanup(worker_ctx)
    assert await factory.pool.fetchval("SELECT count(*) FROM cleanup_policy_holds") == 0

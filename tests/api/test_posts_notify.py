"""The pmd_posts_changed NOTIFY of POST /api/pmd/action and /api/pmd/license: sent after commit,
never for a rejected batch."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.core.settings import Settings
from support.seeding import Factory
from tests.helpers import act, assert_problem, ok

Client = TestClient[Any, Any]


@pytest.fixture
async def notifications(settings: Settings) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    assert settings.database_url is not None
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    conn = await asyncpg.connect(settings.direct_url)

    def on_notify(_c: object, _pid: int, channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        queue.put_nowait({"channel": channel, **json.loads(payload)})

    await conn.add_listener("pmd_posts_changed", on_notify)
    try:
        yield queue
    finally:
        await conn.remove_listener("pmd_posts_changed", on_notify)
        await conn.close()


async def _no_notification(pool: asyncpg.Pool, queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Nothing was announced by what committed so far. PostgreSQL delivers the notifications of
    different transactions in the order they committed, so a marker sent now arrives after any
    NOTIFY of the batches before it: the first notification must be the marker."""
    marker = {"marker": str(uuid.uuid4())}
    await pool.execute("SELECT pg_notify('pmd_posts_changed', $1)", json.dumps(marker))
    note = await asyncio.wait_for(queue.get(), timeout=5)
    assert note == {"channel": "pmd_posts_changed", **marker}, f"unexpected notification {note}"


async def test_notify_after_commit_and_not_for_rejected_batches(
    client: Client,
    factory: Factory,
    pool: asyncpg.Pool,
    notifications: asyncio.Queue[dict[str, Any]],
) -> None:
    user = await factory.user()
    bob = await factory.user()
    ids = await factory.posts_bulk(user, 3)
    bobs = await factory.posts_bulk(bob, 1)

    await ok(client, user, "hide", ids[:2])
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert note == {
        "channel": "pmd_posts_changed",
        "user_id": user.id,
        "action": "hide",
        "post_ids": ids[:2],
    }
    # Delivered after commit: another connection already sees the change.
    flags = await factory.post_flags(ids[:2])
    assert all(f["hidden_by_user"] for f in flags.values())

    # Only the ids that changed are announced.
    await ok(client, user, "hide", ids)
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert note["post_ids"] == ids[2:]

    # Rejected batches and batches that change nothing stay silent.
    await assert_problem(await act(client, user, "delete", [*ids, *bobs]), 400)
    await assert_problem(await act(client, user, "delete", [*ids, ids[0]]), 422)
    await ok(client, user, "hide", ids)
    await _no_notification(factory.pool, notifications)

    await ok(client, user, "delete", ids)
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert (note["action"], note["post_ids"]) == ("delete", ids)
    await ok(client, user, "restore", ids[:1])
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert (note["action"], note["post_ids"]) == ("restore", ids[:1])


async def test_notify_for_moderator_and_license_changes(
    client: Client,
    factory: Factory,
    notifications: asyncio.Queue[dict[str, Any]],
) -> None:
    mod, bob, ids = await factory.caller_and_posts(2, roles=["moderator"])
    await ok(client, mod, "hide", ids, target_sqid=bob.sqid)
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    # The user whose posts changed, so the host site invalidates the right feeds.
    assert (note["user_id"], note["action"], note["post_ids"]) == (bob.id, "hide", ids)

    cc = await factory.license("CC0")
    resp = await client.post(
        "/api/pmd/license", json={"post_ids": ids, "license_id": cc}, headers=bob.auth
    )
    assert resp.status == 200
    note = await asyncio.wait_for(notifications.get(), timeout=5)
    assert (note["user_id"], note["action"], note["post_ids"]) == (bob.id, "license", ids)

    resp = await client.post(
        "/api/pmd/license", json={"post_ids": ids, "license_id": 999}, headers=bob.auth
    )
    await assert_problem(resp, 400)
    await _no_notification(factory.pool, notifications)

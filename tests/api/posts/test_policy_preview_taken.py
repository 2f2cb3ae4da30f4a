"""A saved policy's preview counts as its run would (issue 75): without the posts its owner took
back from it, which no later run takes again, so the count and "Run now" agree."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from support.seeding import Factory, UserRow
from tests.helpers import assert_problem

Client = TestClient[Any, Any]
POLICIES = "/api/pmd/policies"
RULE = {"name": "Old stuff", "action": "hide", "older_than_days": 365}


async def _call(client: Client, user: UserRow, path: str, body: Any = None) -> Any:
    resp = await client.post(path, json=body, headers=user.auth)
    assert resp.status < 300, await resp.text()
    return await resp.json()


async def _count(client: Client, user: UserRow, **extra: Any) -> int:
    seen = await _call(client, user, f"{POLICIES}/preview", {**RULE, **extra})
    return int(seen["count"])


async def test_a_saved_policys_preview_leaves_what_its_owner_took_back(
    client: Client, factory: Factory
) -> None:
    owner = await factory.user()
    old = datetime.now(UTC) - timedelta(days=500)
    ids = [(await factory.post(owner, created_at=old)).id for _ in range(3)]
    made = await _call(client, owner, POLICIES, {**RULE, "expect_count": 3})
    ran = await _call(client, owner, f"{POLICIES}/{made['id']}/run")
    assert ran["run"]["changed_count"] == 3
    # The owner takes two back by undoing the run, and hides the third again by hand.
    await _call(client, owner, f"/api/pmd/actions/{ran['run']['action_id']}/undo")
    await _call(client, owner, "/api/pmd/action", {"action": "unhide", "post_ids": ids})

    assert await _count(client, owner) == 3  # a new policy would take them
    assert await _count(client, owner, policy_id=made["id"]) == 0
    again = await _call(client, owner, f"{POLICIES}/{made['id']}/run")
    assert again["run"]["changed_count"] == 0

    # A new post grown old is counted and taken.
    fresh = await factory.post(owner, created_at=old)
    assert await _count(client, owner, policy_id=made["id"]) == 1
    seen = await _call(client, owner, f"{POLICIES}/preview", {**RULE, "policy_id": made["id"]})
    assert [p["id"] for p in seen["sample"]] == [fresh.id]


async def test_a_preview_names_only_the_targets_own_policy(
    client: Client, factory: Factory
) -> None:
    owner = await factory.user()
    other = await factory.user()
    theirs = await _call(client, other, POLICIES, {**RULE, "expect_count": 0})
    for policy_id in (theirs["id"], str(uuid.uuid4())):
        resp = await client.post(
            f"{POLICIES}/preview", json={**RULE, "policy_id": policy_id}, headers=owner.auth
        )
        await assert_problem(resp, 404, "policy_not_found")

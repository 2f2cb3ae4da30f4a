"""Concurrent batches of POST /api/pmd/action on the same posts, against real PostgreSQL row
locks."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from support.seeding import Factory
from tests.helpers import act, assert_problem, eventually

Client = TestClient[Any, Any]


# A batch waits on a post's row lock, or, behind another batch against the same budget, on
# that budget's lock (posts/pace.py).
SQL_BATCHES_WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
  AND (query LIKE '%WITH eligible%' OR query LIKE '%pg_advisory_xact_lock%')
"""


async def batches_waiting(pool: asyncpg.Pool, n: int) -> None:
    """Until `n` batches wait on a lock together (bounded: a guard against a hang)."""

    async def waiting() -> bool:
        count: int = await pool.fetchval(SQL_BATCHES_WAITING)
        return count >= n

    await eventually(waiting, 30, lambda: f"fewer than {n} batches waiting on the lock")


async def test_concurrent_overlapping_batches_stay_consistent(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """Ten overlapping batches, all in flight at once: the test holds every post's row lock
    until each batch waits on it, so they really run together, whatever the scheduler does."""
    user = await factory.user()
    rng = random.Random(20240501)
    for _round in range(4):
        await pool.execute("TRUNCATE posts CASCADE")
        ids = await factory.posts_bulk(user, 120)
        batches: list[tuple[str, list[int]]] = []
        for _ in range(10):
            action = rng.choice(["hide", "hide", "delete"])
            batch = rng.sample(ids, rng.randint(10, 60))
            batches.append((action, batch))

        async def run(action: str, batch: list[int]) -> tuple[int, dict[str, Any]]:
            resp = await act(client, user, action, batch)
            return resp.status, await resp.json()

        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("SELECT 1 FROM posts WHERE id = ANY($1::int[]) FOR UPDATE", ids)
            running = asyncio.gather(*(run(a, b) for a, b in batches))
            await batches_waiting(pool, len(batches))
        results = await asyncio.wait_for(running, timeout=30)
        flags = await factory.post_flags(ids)
        hidden = {i for i, f in flags.items() if f["hidden_by_user"]}
        deleted = {i for i, f in flags.items() if f["deleted_by_user"]}
        hide_total = delete_total = 0
        for (action, batch), (status, body) in zip(batches, results, strict=True):
            # No deadlock or serialization error ever surfaces as a 5xx.
            assert status in (200, 400), body
            if status == 400:
                # The only way one of the user's own artworks becomes ineligible here is a
                # concurrent delete; every id named must really be deleted, and only those.
                named = set(body["invalid_post_ids"])
                assert named and named <= deleted and named <= set(batch)
                continue
            assert body["affected_count"] == len(batch)
            if action == "hide":
                hide_total += body["changed_count"]
                assert set(batch) <= hidden
            else:
                delete_total += body["changed_count"]
                assert body["affected_count"] == len(batch)
                assert set(batch) <= deleted
        # Every post was hidden at most once and deleted at most once, by a batch that said so.
        assert hide_total == len(hidden)
        assert delete_total == len(deleted)
        assert all(flags[i]["deleted_by_user_date"] is not None for i in deleted)


async def test_a_batch_that_loses_to_a_concurrent_delete_names_the_deleted_posts(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """A hide waits for a delete of some of its posts that is under way; once the delete
    commits, the hide is refused naming exactly those posts, and changes nothing."""
    user, ids = await factory.owner_and_bulk(20)
    doomed = ids[5:8]
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(
            "UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now()"
            " WHERE id = ANY($1::int[])",
            doomed,
        )
        hide = asyncio.ensure_future(act(client, user, "hide", ids))
        await batches_waiting(pool, 1)
    resp = await asyncio.wait_for(hide, timeout=30)
    body = await assert_problem(resp, 400)
    assert body["invalid_post_ids"] == doomed
    flags = await factory.post_flags(ids)
    assert not any(f["hidden_by_user"] for f in flags.values())

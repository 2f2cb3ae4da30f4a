"""What keeps cleanup policies from stalling, surprising or being overruled, from outside: a
run held up by a locked post fails alone and backs off while other owners' policies run, a
moderator's pause binds and survives the owner's concurrent change, a banned owner's policies
stop, a run far larger than approved waits, and the exceptions every run keeps."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.locks import SQL_XACT_LOCK, AdvisoryLock
from pmd_service.core.settings import Settings
from pmd_service.features.posts.policies.runs import SQL_TAKE_DUE, run_due_policies
from pmd_service.features.posts.policies.service import COLUMNS
from pmd_service.host import columns
from pmd_service.jobs.context import job_context, state
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from tests.api.posts.test_cleanup_policies import (
    OLD,
    POLICIES,
    create,
    due_now,
    gallery,
    gallery_policy,
    hidden,
    moderated_policy,
    policy,
    preview,
)
from tests.api.posts.test_posts_concurrency import batches_waiting
from tests.conftest import TestDatabase as ServiceDatabase
from tests.helpers import assert_problem, site_spent

Client = TestClient[Any, Any]


async def only_due(pool: asyncpg.Pool, *made: dict[str, Any]) -> None:
    """Only these policies are on (the database is the worker's whole world)."""
    ids = [uuid.UUID(m["id"]) for m in made]
    await pool.execute(
        "UPDATE cleanup_policies SET enabled = false WHERE id <> ALL($1::uuid[])", ids
    )


async def stored(pool: asyncpg.Pool, made: dict[str, Any]) -> asyncpg.Record:
    row = await pool.fetchrow(
        f"SELECT {COLUMNS}, failures, runs, next_run_at <= now() AS due FROM cleanup_policies "
        "WHERE id = $1",
        uuid.UUID(made["id"]),
    )
    assert row is not None
    return row


@asynccontextmanager
async def locked(pool: asyncpg.Pool, post_id: int) -> AsyncIterator[None]:
    """The post's row held by another connection's transaction, as a slow write holds it."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM posts WHERE id = $1 FOR UPDATE", post_id)
        yield


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """A run's bounds short enough for a test to wait them out."""
    return msgspec.structs.replace(
        settings, policy_run_timeout_seconds=2.0, policy_lock_timeout_seconds=0.5
    )


async def test_a_run_held_up_by_a_locked_post_fails_alone_and_backs_off(
    aiohttp_client: AiohttpClient, quick: Settings, factory: Factory
) -> None:
    client = await aiohttp_client(create_app(quick))
    (first, first_posts), (second, second_posts) = await gallery(factory), await gallery(factory)
    stuck, other = await create(client, first, policy()), await create(client, second, policy())
    await only_due(factory.pool, stuck, other)
    # The stuck policy heads the line.
    await factory.pool.execute(
        "UPDATE cleanup_policies SET next_run_at = now() - interval '1 hour' WHERE id = $1",
        uuid.UUID(stuck["id"]),
    )
    async with job_context(quick) as ctx, locked(factory.pool, first_posts["old2"]):
        assert await run_due_policies(ctx) == 2
        # The other owner's policy ran in the same tick.
        assert await hidden(factory.pool, second_posts) == {"old1", "old2", "old3", "hidden"}
        assert await hidden(factory.pool, first_posts) == {"hidden"}
        row = await stored(factory.pool, stuck)
        assert (row["last_run"]["status"], row["last_run"]["error_code"]) == (
            "failed",
            "policy_run_timeout",
        )
        # Backed off behind the line rather than heading it at every tick.
        assert row["failures"] == 1 and not row["due"]
        assert row["next_run_at"] > datetime.now(UTC) + timedelta(seconds=30)
        assert await run_due_policies(ctx) == 0
        samples = state(ctx).metrics.registry.get_sample_value
        labels = {"kind": "cleanup_policy", "status": "failed"}
        assert samples("pmd_scheduled_runs_total", labels) == 1
        item = await (await client.get(f"{POLICIES}/{stuck['id']}", headers=first.auth)).json()
        assert item["last_run"]["error_code"] == "policy_run_timeout"
    # The lock gone, it runs whole, and its failures are forgotten.
    await due_now(factory.pool, stuck["id"])
    async with job_context(quick) as ctx:
        assert await run_due_policies(ctx) == 1
    assert await hidden(factory.pool, first_posts) == {"old1", "old2", "old3", "hidden"}
    row = await stored(factory.pool, stuck)
    assert row["last_run"]["status"] == "ok" and row["failures"] == 0


async def test_a_lone_due_run_held_up_by_a_locked_post_fails_and_backs_off(
    aiohttp_client: AiohttpClient, quick: Settings, factory: Factory
) -> None:
    """Taken alone, it runs in the transaction that took it; its failure is recorded all the
    same."""
    client = await aiohttp_client(create_app(quick))
    owner, posts = await gallery(factory)
    stuck = await create(client, owner, policy())
    await only_due(factory.pool, stuck)
    async with job_context(quick) as ctx, locked(factory.pool, posts["old2"]):
        assert await run_due_policies(ctx) == 1
        row = await stored(factory.pool, stuck)
        assert (row["last_run"]["error_code"], row["failures"], row["due"]) == (
            "policy_run_timeout",
            1,
            False,
        )
    assert await hidden(factory.pool, posts) == {"hidden"}


async def test_run_now_held_up_by_a_locked_post_answers_503_and_says_so(
    aiohttp_client: AiohttpClient, quick: Settings, factory: Factory
) -> None:
    client = await aiohttp_client(create_app(quick))
    owner, posts = await gallery(factory)
    made = await create(client, owner, policy())
    before = await stored(factory.pool, made)
    async with locked(factory.pool, posts["old1"]):
        resp = await client.post(f"{POLICIES}/{made['id']}/run", headers=owner.auth)
        body = await assert_problem(resp, 503, "policy_run_timeout")
        assert resp.headers["Retry-After"] == str(body["details"]["retry_after_seconds"])
    assert await hidden(factory.pool, posts) == {"hidden"}
    row = await stored(factory.pool, made)
    assert row["last_run"]["status"] == "failed"
    # Its schedule is the owner's, unchanged by a run asked for now.
    assert (row["next_run_at"], row["failures"]) == (before["next_run_at"], 0)


@pytest.mark.parametrize("name", ["   ", "\t", "\n", "\u00a0", "\u3000", "a\u202eb", "\u200bx"])
async def test_a_name_blank_or_hiding_characters_is_refused(
    client: Client, factory: Factory, name: str
) -> None:
    owner, _ = await gallery(factory)
    resp = await client.post(
        POLICIES, json={**policy(name=name), "expect_count": 3}, headers=owner.auth
    )
    body = await assert_problem(resp, 422, "validation_failed")
    assert [e["field"] for e in body["errors"]] == ["name"]
    made = await create(client, owner, policy(name="  Tidy  "))
    assert made["name"] == "Tidy"
    resp = await client.patch(f"{POLICIES}/{made['id']}", json={"name": name}, headers=owner.auth)
    await assert_problem(resp, 422, "validation_failed")


@pytest.mark.parametrize("tag", ["", "#", " # ", "x" * 65])
async def test_a_keep_tag_no_post_can_carry_is_refused(
    client: Client, factory: Factory, tag: str
) -> None:
    owner, _ = await gallery(factory)
    body = policy(keep={"hashtags": ["keep", tag]})
    resp = await client.post(f"{POLICIES}/preview", json=body, headers=owner.auth)
    problem = await assert_problem(resp, 400, "invalid_tags")
    assert [e["field"] for e in problem["errors"]] == ["keep.hashtags"]
    # `#Keep` is the tag `keep`, as the filter takes it.
    seen = await preview(client, owner, policy(keep={"hashtags": ["#Keep"], "min_reactions": 3}))
    assert seen["count"] == 3


async def test_a_moderators_pause_survives_the_owners_concurrent_change(
    client: Client, factory: Factory
) -> None:
    owner, _, made = await gallery_policy(client, factory)
    url = f"{POLICIES}/{made['id']}"
    # A moderator's pause, in flight: the row changed and not yet committed.
    async with factory.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE cleanup_policies SET enabled = false, paused_by_moderator = true WHERE id = $1",
            uuid.UUID(made["id"]),
        )
        rename = asyncio.ensure_future(
            client.patch(url, json={"name": "Renamed"}, headers=owner.auth)
        )
        await asyncio.sleep(0.5)  # the owner's change reaches the row while the pause holds it
    resp = await rename
    assert resp.status == 200, await resp.text()
    item = await resp.json()
    assert (item["name"], item["enabled"], item["paused_by_moderator"]) == ("Renamed", False, True)


async def test_a_moderators_pause_binds_until_a_moderator_lifts_it(
    client: Client, factory: Factory
) -> None:
    owner, _, url, mod = await moderated_policy(client, factory)
    as_mod = f"?target_sqid={owner.sqid}"
    paused = await client.patch(url + as_mod, json={"enabled": False}, headers=mod.auth)
    assert paused.status == 200, await paused.text()
    assert (await paused.json())["paused_by_moderator"] is True
    # The owner may neither turn it on nor run it, with or without its count.
    for change in ({"enabled": True}, {"enabled": True, "expect_count": 3}):
        resp = await client.patch(url, json=change, headers=owner.auth)
        await assert_problem(resp, 403, "policy_paused_by_moderator")
    resp = await client.post(f"{url}/run", headers=owner.auth)
    await assert_problem(resp, 403, "policy_paused_by_moderator")
    resp = await client.patch(url, json={"paused_by_moderator": False}, headers=owner.auth)
    await assert_problem(resp, 403, "policy_paused_by_moderator")
    # A moderator turns nothing on: lifting the pause leaves it paused, for its owner.
    resp = await client.patch(url + as_mod, json={"enabled": True}, headers=mod.auth)
    await assert_problem(resp, 403, "policy_owner_only")
    lifted = await client.patch(url + as_mod, json={"paused_by_moderator": False}, headers=mod.auth)
    assert lifted.status == 200, await lifted.text()
    assert ((await lifted.json())["enabled"], (await lifted.json())["paused_by_moderator"]) == (
        False,
        False,
    )
    resp = await client.patch(url, json={"enabled": True, "expect_count": 3}, headers=owner.auth)
    assert resp.status == 200, await resp.text()
    # The owner's own pause binds nobody: they turn it on again with its count.
    mine = await (await client.patch(url, json={"enabled": False}, headers=owner.auth)).json()
    assert (mine["enabled"], mine["paused_by_moderator"]) == (False, False)


async def test_a_pause_succeeds_whatever_the_filter_names_now(
    client: Client, factory: Factory
) -> None:
    owner, _ = await gallery(factory)
    gone = await factory.license("CC-GONE-1.0")
    made = await create(client, owner, policy(filter={"license": "none"}))
    # The filter names a license the site removes afterwards.
    await factory.pool.execute(
        'UPDATE cleanup_policies SET filter = \'{"license": "CC-GONE-1.0"}\' WHERE id = $1',
        uuid.UUID(made["id"]),
    )
    await factory.pool.execute("DELETE FROM licenses WHERE id = $1", gone)
    url = f"{POLICIES}/{made['id']}"
    mod = await factory.user(roles=["user", "moderator"])
    resp = await client.patch(
        f"{url}?target_sqid={owner.sqid}", json={"enabled": False}, headers=mod.auth
    )
    assert resp.status == 200, await resp.text()
    resp = await client.patch(url, json={"enabled": False, "notify": True}, headers=owner.auth)
    assert resp.status == 200, await resp.text()
    # Turning it on again names the filter key to fix.
    resp = await client.patch(url, json={"enabled": True}, headers=owner.auth)
    await assert_problem(resp, 403, "policy_paused_by_moderator")


async def test_turning_hide_into_delete_always_needs_the_count(
    client: Client, factory: Factory
) -> None:
    owner, _ = await gallery(factory)
    # Nothing matches now (every old post carries the keep tag or is otherwise kept).
    made = await create(client, owner, policy(older_than_days=3650))
    assert made["preview"]["count"] == 0
    url = f"{POLICIES}/{made['id']}"
    resp = await client.patch(url, json={"action": "delete"}, headers=owner.auth)
    body = await assert_problem(resp, 409, "policy_widens")
    assert body["details"]["count"] == 0
    resp = await client.patch(url, json={"action": "delete", "expect_count": 0}, headers=owner.auth)
    assert resp.status == 200 and (await resp.json())["action"] == "delete"
    # Back to hide narrows: no count.
    resp = await client.patch(url, json={"action": "hide"}, headers=owner.auth)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(
    ("cols", "code"),
    [
        ({"banned_until": datetime.now(UTC) + timedelta(days=1)}, "account_banned"),
        ({"deactivated": True}, "account_deactivated"),
    ],
)
async def test_a_banned_or_deactivated_owners_policies_do_not_run(
    client: Client, factory: Factory, worker_ctx: dict[str, Any], cols: dict[str, Any], code: str
) -> None:
    owner, posts, made = await gallery_policy(client, factory)
    await only_due(factory.pool, made)
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=2))
    await factory.pool.execute(f"UPDATE users SET {sets} WHERE id = $1", owner.id, *cols.values())
    assert await run_due_policies(worker_ctx) == 1
    assert await hidden(factory.pool, posts) == {"hidden"}
    row = await stored(factory.pool, made)
    assert (row["last_run"]["status"], row["last_run"]["error_code"]) == ("failed", code)
    # Recorded once for the period, not retried at every tick.
    assert not row["due"] and row["failures"] == 0


async def test_a_run_far_larger_than_approved_waits_for_its_owner(
    client: Client, factory: Factory, worker_ctx: dict[str, Any]
) -> None:
    owner, posts, made = await gallery_policy(client, factory)
    await only_due(factory.pool, made)
    assert made["approved_count"] == 3
    # 200 more old posts since the owner approved 3 (an import, a changed clock).
    more = [(await factory.post(owner, created_at=OLD)).id for _ in range(200)]
    assert await run_due_policies(worker_ctx) == 1
    assert await hidden(factory.pool, posts) == {"hidden"}
    row = await stored(factory.pool, made)
    assert (row["last_run"]["status"], row["last_run"]["left_count"]) == ("held", 203)
    assert not row["due"]
    # The owner approves that count: due at once, and the next tick runs it whole.
    url = f"{POLICIES}/{made['id']}"
    resp = await client.patch(url, json={"expect_count": 200}, headers=owner.auth)
    await assert_problem(resp, 409, "count_changed")
    resp = await client.patch(url, json={"expect_count": 203}, headers=owner.auth)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["approved_count"] == 203
    assert await run_due_policies(worker_ctx) == 1
    changed = await factory.pool.fetchval(
        "SELECT count(*) FROM posts WHERE id = ANY($1::int[]) AND hidden_by_user", more
    )
    assert changed == 200 and (await stored(factory.pool, made))["last_run"]["status"] == "ok"


async def test_every_run_keeps_what_the_site_promoted_and_its_exceptions(
    client: Client, factory: Factory
) -> None:
    owner = await factory.user()
    fan = await factory.user()
    shapes: dict[str, dict[str, Any]] = {
        "plain": {},
        "promoted": {"promoted_at": OLD},
        "viewed": {"view_count": 10},  # exactly the minimum: kept
        "less_viewed": {"view_count": 9},
        "layers": {"mkpx_file_bytes": 100},
        "deleted": {"deleted_by_user": True, "deleted_by_user_date": OLD},
        "commented": {},  # two visible comments and a hidden one: under three, not kept
    }
    posts = {}
    for name, cols in shapes.items():
        posts[name] = await factory.post(owner, created_at=OLD, **cols)
    for hidden_by_mod in (False, False, True):
        await factory.comment(posts["commented"], fan, "nice", hidden_by_mod=hidden_by_mod)
    keep = {"min_views": 10, "min_comments": 3, "has_layers": True}
    seen = await preview(client, owner, policy(action="delete", keep=keep))
    by_id = {p.id: n for n, p in posts.items()}
    assert sorted(by_id[p["id"]] for p in seen["sample"]) == ["commented", "less_viewed", "plain"]
    # Keeping what has no layers file, only the one with a file goes.
    flipped = {**keep, "has_layers": False}
    seen = await preview(client, owner, policy(action="delete", keep=flipped))
    assert [by_id[p["id"]] for p in seen["sample"]] == ["layers"]


async def test_two_ticks_never_both_run_one_policy_even_one_that_changes_nothing(
    client: Client, factory: Factory, worker_ctx: dict[str, Any]
) -> None:
    owner, _ = await gallery(factory)
    made = await create(client, owner, policy(older_than_days=3650))  # changes nothing
    await only_due(factory.pool, made)
    async with factory.pool.acquire() as conn, conn.transaction():
        taken = await conn.fetchrow(SQL_TAKE_DUE, 1)
        assert taken is not None and str(taken["id"]) == made["id"]
        # Another tick while this one holds it: it finds nothing due.
        assert await asyncio.wait_for(run_due_policies(worker_ctx), 30) == 0
    assert (await stored(factory.pool, made))["runs"] == 0
    await asyncio.gather(run_due_policies(worker_ctx), run_due_policies(worker_ctx))
    row = await stored(factory.pool, made)
    assert row["runs"] == 1 and row["last_run"]["changed_count"] == 0


async def test_a_run_stopped_only_by_the_cap_is_ok_and_the_moderator_sees_no_undo(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory
) -> None:
    client = await aiohttp_client(create_app(msgspec.structs.replace(settings, bulk_max_posts=2)))
    owner, _, made = await gallery_policy(client, factory)
    run = await (await client.post(f"{POLICIES}/{made['id']}/run", headers=owner.auth)).json()
    assert (run["run"]["status"], run["run"]["changed_count"], run["run"]["left_count"]) == (
        "ok",
        2,
        1,
    )
    assert run["policy"]["last_run_undo"]
    mod = await factory.user(roles=["user", "moderator"])
    url = f"{POLICIES}/{made['id']}?target_sqid={owner.sqid}"
    assert (await (await client.get(url, headers=mod.auth)).json())["last_run_undo"] is None


async def test_a_persons_batch_passes_when_the_policies_filled_the_sites_minute(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner: UserRow
    owner, posts = await gallery(factory)
    # Others' writes and the policies' runs took the whole minute of the site.
    background = settings.bulk_changed_posts_site_background_per_minute
    await site_spent(factory.pool, 0, background, background=True)
    await site_spent(factory.pool, 0, settings.bulk_changed_posts_site_per_minute - background)
    resp = await client.post(
        "/api/pmd/action", json={"action": "hide", "post_ids": [posts["old1"]]}, headers=owner.auth
    )
    assert resp.status == 200, await resp.text()
    # A policy's run waits for the policies' share to free up.
    made = await create(client, owner, policy())
    run = await (await client.post(f"{POLICIES}/{made['id']}/run", headers=owner.auth)).json()
    assert (run["run"]["status"], run["run"]["changed_count"]) == ("deferred", 0)


async def test_a_run_refused_at_spend_by_the_sites_budget_stays_due(
    client: Client, factory: Factory, worker_ctx: dict[str, Any], settings: Settings
) -> None:
    _, posts, made = await gallery_policy(client, factory)
    await only_due(factory.pool, made)
    async with factory.pool.acquire() as holder:
        async with holder.transaction():
            await holder.execute(SQL_XACT_LOCK, AdvisoryLock.WRITE_BUDGET_SITE, 0)
            tick = asyncio.ensure_future(run_due_policies(worker_ctx))
            # The run has changed its posts and waits to spend; the policies' share goes meanwhile.
            await batches_waiting(factory.pool, 1)
            background = settings.bulk_changed_posts_site_background_per_minute
            await site_spent(holder, 0, background, background=True)
        assert await tick == 1
    assert await hidden(factory.pool, posts) == {"hidden"}
    row = await stored(factory.pool, made)
    # Deferred, not failed: due again at the next minute rather than a period later.
    assert row["last_run"]["status"] == "deferred" and row["due"] and row["failures"] == 0


async def test_a_tick_the_sites_minute_holds_waits_for_room_and_runs_the_rest(
    client: Client, factory: Factory, worker_ctx: dict[str, Any], settings: Settings
) -> None:
    made = [await gallery_policy(client, factory) for _ in range(2)]
    await only_due(factory.pool, *(m for _, _, m in made))
    # The policies' share of the minute, spent 56 s ago: still in the minute when the tick
    # begins, however slow the machine, and out of it within the tick.
    background = settings.bulk_changed_posts_site_background_per_minute
    await factory.pool.execute(
        "INSERT INTO site_spends (second, background, posts)"
        " VALUES (date_trunc('second', now()) - interval '56 seconds', true, $1)",
        background,
    )
    # The first run is held (deferred), then the tick waits and both run in the same tick.
    assert await run_due_policies(worker_ctx) == 3
    for _, posts, policy_made in made:
        assert await hidden(factory.pool, posts) == {"old1", "old2", "old3", "hidden"}
        row = await stored(factory.pool, policy_made)
        assert row["last_run"]["status"] == "ok" and not row["due"]


async def test_without_the_hosts_promoted_at_no_policy_runs_nor_is_written(
    client: Client,
    factory: Factory,
    worker_ctx: dict[str, Any],
    test_database: ServiceDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner, posts, made = await gallery_policy(client, factory)
    await only_due(factory.pool, made)
    role = test_database.role
    # A host before its release of 2026-09-12, or grants not run again since: unreadable.
    await factory.pool.execute(f"REVOKE SELECT (promoted_at) ON posts FROM {role}")
    monkeypatch.setattr(columns, "_known", {})
    try:
        resp = await client.post(f"{POLICIES}/preview", json=policy(), headers=owner.auth)
        body = await assert_problem(resp, 404, "policies_off")
        assert "promoted_at" in body["detail"]
        assert await run_due_policies(worker_ctx) == 0
        assert await hidden(factory.pool, posts) == {"hidden"}
    finally:
        await factory.pool.execute(f"GRANT SELECT (promoted_at) ON posts TO {role}")
        monkeypatch.setattr(columns, "_known", {})
    assert await run_due_policies(worker_ctx) == 1
    assert await hidden(factory.pool, posts) == {"old1", "old2", "old3", "hidden"}

"""Cleanup policies from outside, against real PostgreSQL: a count before anything runs, a
run on the schedule and one asked for, each one bulk action in the history, undone by the
owner, and the guards (keep tags, a moderator's hidden post, a post its owner took back, a
widening without its count, another owner's policy, a run killed before it committed)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.api.keys import PRESENCE
from pmd_service.core import presence
from pmd_service.core.db import settings_pool
from pmd_service.features.posts.policies.runs import run_due_policies, run_locked
from pmd_service.features.posts.policies.service import COLUMNS
from pmd_service.host import columns
from pmd_service.jobs.context import job_context
from support.seeding import Factory, UserRow
from tests.helpers import age_spends, assert_problem, ok

Client = TestClient[Any, Any]
POLICIES = "/api/pmd/policies"
OLD = datetime.now(UTC) - timedelta(days=800)


def policy(**fields: Any) -> dict[str, Any]:
    """Hide what is older than two years and has fewer than three reactions, except #keep."""
    return {
        "name": "Old and quiet",
        "action": "hide",
        "older_than_days": 730,
        "keep": {"hashtags": ["keep"], "min_reactions": 3},
        "every": "week",
        **fields,
    }


async def gallery(factory: Factory) -> tuple[UserRow, dict[str, int]]:
    """An owner's posts: old ones (plain, tagged #keep, popular, hidden by a moderator,
    already hidden) and a new one."""
    owner = await factory.user()
    posts = {}
    shapes: dict[str, dict[str, Any]] = {
        "old1": {},
        "old2": {},
        "old3": {},
        "kept": {"hashtags": ["keep", "pixel"]},
        "popular": {},
        "moderated": {"hidden_by_mod": True},
        "hidden": {"hidden_by_user": True},
    }
    for name, cols in shapes.items():
        posts[name] = (await factory.post(owner, created_at=OLD, **cols)).id
    posts["new"] = (await factory.post(owner)).id
    fan = await factory.user()
    for emoji in ("a", "b", "c"):
        await factory.pool.execute(
            "INSERT INTO reactions (post_id, user_id, emoji) VALUES ($1, $2, $3)",
            posts["popular"],
            fan.id,
            emoji,
        )
    return owner, posts


def ids(sample: list[dict[str, Any]]) -> list[int]:
    return [p["id"] for p in sample]


async def preview(client: Client, user: UserRow, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(f"{POLICIES}/preview", json=body, headers=user.auth)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def create(client: Client, user: UserRow, body: dict[str, Any]) -> dict[str, Any]:
    seen = await preview(client, user, body)
    resp = await client.post(
        POLICIES, json={**body, "expect_count": seen["count"]}, headers=user.auth
    )
    assert resp.status == 201, await resp.text()
    made = dict(await resp.json())
    assert resp.headers["Location"] == f"{POLICIES}/{made['id']}"
    return made


async def gallery_policy(client: Client, factory: Factory) -> tuple[UserRow, dict[str, int], Any]:
    """A `gallery` and the owner's `policy()` made."""
    owner, posts = await gallery(factory)
    return owner, posts, await create(client, owner, policy())


async def moderated_policy(client: Client, factory: Factory) -> tuple[UserRow, Any, str, UserRow]:
    """A `gallery_policy`'s owner and policy, the policy's URL, and a moderator."""
    owner, _, made = await gallery_policy(client, factory)
    return owner, made, f"{POLICIES}/{made['id']}", await factory.user(roles=["user", "moderator"])


async def hidden(pool: asyncpg.Pool, posts: dict[str, int]) -> set[str]:
    rows = await pool.fetch(
        "SELECT id FROM posts WHERE id = ANY($1::int[]) AND hidden_by_user", list(posts.values())
    )
    by_id = {v: k for k, v in posts.items()}
    return {by_id[r["id"]] for r in rows}


async def runs(pool: asyncpg.Pool, policy_id: str) -> int:
    """The policy's entries in the history (other tests' policies share the database)."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM bulk_actions WHERE policy_id = $1", uuid.UUID(policy_id)
        )
    )


async def due_now(pool: asyncpg.Pool, policy_id: str) -> None:
    await pool.execute(
        "UPDATE cleanup_policies SET next_run_at = now() - interval '1 minute' WHERE id = $1",
        uuid.UUID(policy_id),
    )


async def test_a_preview_counts_what_a_run_would_change_and_saving_is_bound_to_it(
    client: Client, factory: Factory
) -> None:
    owner, posts = await gallery(factory)
    seen = await preview(client, owner, policy())
    # Not the kept, the popular, the moderator's, the one already hidden, nor the new one.
    assert seen["count"] == 3
    assert ids(seen["sample"]) == [posts["old1"], posts["old2"], posts["old3"]]
    assert seen["match_digest"]
    resp = await client.post(POLICIES, json={**policy(), "expect_count": 4}, headers=owner.auth)
    body = await assert_problem(resp, 409, "count_changed")
    assert body["details"]["count"] == 3
    resp = await client.post(
        POLICIES,
        json={**policy(), "expect_count": 3, "expect_digest": "0" * 32},
        headers=owner.auth,
    )
    await assert_problem(resp, 409, "set_changed")
    made = await create(client, owner, policy())
    assert made["preview"]["count"] == 3 and made["last_run"] is None
    assert datetime.fromisoformat(made["next_run_at"]) <= datetime.now(UTC) + timedelta(seconds=1)
    listed = await (await client.get(POLICIES, headers=owner.auth)).json()
    assert [p["id"] for p in listed["items"]] == [made["id"]] and listed["limit"] == 10


async def test_a_due_policy_runs_on_the_tick_once_as_one_undoable_action(
    client: Client, factory: Factory, worker_ctx: dict[str, Any]
) -> None:
    owner, posts, made = await gallery_policy(client, factory)
    assert await run_due_policies(worker_ctx) >= 1
    assert await hidden(factory.pool, posts) == {"old1", "old2", "old3", "hidden"}
    # Its clock moved on by its period: the next tick does not run it again.
    await run_due_policies(worker_ctx)
    assert await runs(factory.pool, made["id"]) == 1
    item = await (await client.get(f"{POLICIES}/{made['id']}", headers=owner.auth)).json()
    assert item["last_run"]["status"] == "ok"
    assert (item["last_run"]["changed_count"], item["last_run"]["left_count"]) == (3, 0)
    assert datetime.fromisoformat(item["next_run_at"]) > datetime.now(UTC) + timedelta(days=6)
    # One entry in the history, done by the policy, which its owner undoes.
    actions = (await (await client.get("/api/pmd/actions", headers=owner.auth)).json())["items"]
    assert len(actions) == 1
    entry = actions[0]
    assert (entry["action"], entry["changed_count"]) == ("hide", 3)
    assert (entry["policy_id"], entry["policy_name"]) == (made["id"], "Old and quiet")
    assert not entry["by_moderator"] and entry["undo"] == item["last_run_undo"]
    # One `posts_changed` on the owner's stream, naming the run and the posts it hid.
    events = await factory.pool.fetch(
        "SELECT subject_id, payload FROM stream_events WHERE user_id = $1 AND kind = 'posts'",
        owner.id,
    )
    assert [(str(e["subject_id"]), e["payload"]) for e in events] == [
        (
            entry["id"],
            {
                "kind": "posts",
                "action": "hide",
                "post_ids": sorted(posts[k] for k in ("old1", "old2", "old3")),
                "changed_count": 3,
            },
        )
    ]
    resp = await client.post(entry["undo"], headers=owner.auth)
    assert resp.status == 200, await resp.text()
    assert await hidden(factory.pool, posts) == {"hidden"}
    # Taken back by its owner: the next run leaves those posts.
    await due_now(factory.pool, made["id"])
    await run_due_policies(worker_ctx)
    item = await (await client.get(f"{POLICIES}/{made['id']}", headers=owner.auth)).json()
    assert item["last_run"]["changed_count"] == 0 and item["last_run"]["status"] == "ok"
    assert await hidden(factory.pool, posts) == {"hidden"}


async def test_a_post_its_owner_unhid_after_a_run_is_left_by_the_next(
    client: Client, factory: Factory, worker_ctx: dict[str, Any]
) -> None:
    owner, posts, made = await gallery_policy(client, factory)
    run = await client.post(f"{POLICIES}/{made['id']}/run", headers=owner.auth)
    assert run.status == 200, await run.text()
    assert (await run.json())["run"]["changed_count"] == 3
    await ok(client, owner, "unhide", [posts["old1"]])
    extra = (await factory.post(owner, created_at=OLD)).id
    await due_now(factory.pool, made["id"])
    await run_due_policies(worker_ctx)
    assert await runs(factory.pool, made["id"]) == 2
    rows = await factory.pool.fetch(
        "SELECT id, hidden_by_user FROM posts WHERE id = ANY($1::int[])", [posts["old1"], extra]
    )
    assert {r["id"]: r["hidden_by_user"] for r in rows} == {posts["old1"]: False, extra: True}


async def test_a_deleted_policy_forgets_the_posts_it_took(client: Client, factory: Factory) -> None:
    owner, _, made = await gallery_policy(client, factory)
    url, policy_id = f"{POLICIES}/{made['id']}", uuid.UUID(made["id"])
    run = await client.post(f"{url}/run", headers=owner.auth)
    assert run.status == 200, await run.text()
    sql = "SELECT count(*) FROM cleanup_policy_posts WHERE policy_id = $1"
    assert await factory.pool.fetchval(sql, policy_id) == 3
    assert (await client.delete(url, headers=owner.auth)).status == 204
    assert await factory.pool.fetchval(sql, policy_id) == 0


async def test_a_widening_needs_its_count_narrowing_and_pausing_do_not(
    client: Client, factory: Factory
) -> None:
    owner, _posts, made = await gallery_policy(client, factory)
    url = f"{POLICIES}/{made['id']}"
    # Without the keep tag, one more post: refused until approved.
    wider = {"keep": {"min_reactions": 3}}
    body = await assert_problem(
        await client.patch(url, json=wider, headers=owner.auth), 409, "policy_widens"
    )
    assert body["details"]["count"] == 4
    resp = await client.patch(url, json={**wider, "expect_count": 4}, headers=owner.auth)
    assert resp.status == 200, await resp.text()
    # Narrower (older only), a new name, pausing: no count needed.
    for change in ({"older_than_days": 900}, {"name": "Renamed"}, {"enabled": False}):
        resp = await client.patch(url, json=change, headers=owner.auth)
        assert resp.status == 200, (change, await resp.text())
    assert (await resp.json())["next_run_at"] is None
    # Turned on again: the count once more.
    await assert_problem(
        await client.patch(url, json={"enabled": True}, headers=owner.auth), 409, "policy_widens"
    )


async def test_a_moderator_reads_and_pauses_another_owner_gets_404(
    client: Client, factory: Factory
) -> None:
    owner, made, url, mod = await moderated_policy(client, factory)
    as_mod = f"target_sqid={owner.sqid}"
    listed = await client.get(f"{POLICIES}?{as_mod}", headers=mod.auth)
    assert [p["id"] for p in (await listed.json())["items"]] == [made["id"]]
    await assert_problem(
        await client.patch(f"{url}?{as_mod}", json={"older_than_days": 1}, headers=mod.auth),
        403,
        "policy_owner_only",
    )
    await assert_problem(
        await client.post(f"{POLICIES}?{as_mod}", json={**policy(), "expect_count": 3},
                          headers=mod.auth),
        403,
        "policy_owner_only",
    )  # fmt: skip
    paused = await client.patch(f"{url}?{as_mod}", json={"enabled": False}, headers=mod.auth)
    assert paused.status == 200 and (await paused.json())["enabled"] is False
    stranger = await factory.user()
    for method in ("get", "delete"):
        resp = await client.request(method, url, headers=stranger.auth)
        await assert_problem(resp, 404, "policy_not_found")
    await assert_problem(
        await client.post(f"{url}/run", headers=stranger.auth), 404, "policy_not_found"
    )
    assert (await client.delete(url, headers=owner.auth)).status == 204
    await assert_problem(await client.get(url, headers=owner.auth), 404, "policy_not_found")


async def test_a_run_killed_before_it_committed_runs_once_on_the_next_tick(
    client: Client, factory: Factory, worker_ctx: dict[str, Any], settings: Any
) -> None:
    _, posts, made = await gallery_policy(client, factory)
    # A worker that took the policy and ran it, then died before its commit.
    dying = await settings_pool(settings, "pmd-worker", min_size=1, max_size=1)
    try:
        async with dying.acquire() as conn:
            await conn.execute("BEGIN")
            row = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM cleanup_policies WHERE id = $1 FOR UPDATE",
                uuid.UUID(made["id"]),
            )
            assert row is not None
            (ran,) = await run_locked(conn, [row], settings, scheduled=True)
            assert ran.last.changed_count == 3
            # Meanwhile another tick skips the policy its run holds.
            await run_due_policies(worker_ctx)
            assert await runs(factory.pool, made["id"]) == 0
            # The server's own pid: through PgBouncer the connection's is the pooler's.
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            assert await factory.pool.fetchval("SELECT pg_terminate_backend($1, 30000)", pid)
    finally:
        dying.terminate()
    assert await hidden(factory.pool, posts) == {"hidden"}
    # Two ticks at once: the policy runs once, with one history entry.
    await asyncio.gather(run_due_policies(worker_ctx), run_due_policies(worker_ctx))
    assert await hidden(factory.pool, posts) == {"old1", "old2", "old3", "hidden"}
    assert await runs(factory.pool, made["id"]) == 1


@pytest.mark.parametrize(
    ("from_rows", "plans"), [(0, "force_generic_plan"), (10**12, "force_custom_plan")]
)
async def test_a_runs_plans_are_generic_only_on_tables_with_statistics(
    client: Client,
    factory: Factory,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    from_rows: int,
    plans: str,
) -> None:
    from pmd_service.features.posts.policies import runs as runs_module

    _, posts, made = await gallery_policy(client, factory)
    await factory.pool.execute("ANALYZE posts; ANALYZE bulk_actions; ANALYZE cleanup_policy_posts")
    monkeypatch.setattr(runs_module, "GENERIC_PLANS_FROM_ROWS", from_rows)
    pool = await settings_pool(settings, "pmd-worker", min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM cleanup_policies WHERE id = $1 FOR UPDATE",
                uuid.UUID(made["id"]),
            )
            assert row is not None
            (ran,) = await run_locked(conn, [row], settings, scheduled=True)
            assert await conn.fetchval("SELECT current_setting('plan_cache_mode')") == plans
    finally:
        await pool.close()
    assert (ran.last.status, ran.last.changed_count) == ("ok", 3)
    assert await hidden(factory.pool, posts) == {"old1", "old2", "old3", "hidden"}


async def test_a_run_spends_the_owners_budget_and_says_what_it_left(
    aiohttp_client: Any, settings: Any, factory: Factory, worker_ctx: dict[str, Any]
) -> None:
    import msgspec

    from pmd_service.web.app import create_app

    small = msgspec.structs.replace(
        settings,
        bulk_max_posts=2,
        bulk_changed_posts_per_minute=2,
        bulk_changed_posts_per_hour=2,
    )
    client = await aiohttp_client(create_app(small))
    owner, _posts, made = await gallery_policy(client, factory)
    run = await (await client.post(f"{POLICIES}/{made['id']}/run", headers=owner.auth)).json()
    # At most BULK_MAX_POSTS a run, the oldest first; the rest waits and last_run says so.
    assert (run["run"]["changed_count"], run["run"]["left_count"]) == (2, 1)
    assert run["policy"]["last_run"] == run["run"]
    # The hour's budget is spent: the next run changes nothing and says it was deferred.
    run = await (await client.post(f"{POLICIES}/{made['id']}/run", headers=owner.auth)).json()
    assert run["run"]["status"] == "deferred"
    assert (run["run"]["changed_count"], run["run"]["left_count"]) == (0, 1)


async def test_an_owner_may_have_at_most_the_settings_policies(
    client: Client, factory: Factory
) -> None:
    owner, _ = await gallery(factory)
    for n in range(10):
        await create(client, owner, policy(name=f"Rule {n}"))
    resp = await client.post(POLICIES, json={**policy(), "expect_count": 3}, headers=owner.auth)
    body = await assert_problem(resp, 409, "too_many_policies")
    assert body["details"]["limit"] == 10


async def test_an_operator_turns_policies_off_with_one_setting(
    aiohttp_client: Any, settings: Any, factory: Factory
) -> None:
    import msgspec

    from pmd_service.web.app import create_app

    owner, posts = await gallery(factory)
    on = await aiohttp_client(create_app(settings))
    made = await create(on, owner, policy())
    off = msgspec.structs.replace(settings, cleanup_policies=False)
    client = await aiohttp_client(create_app(off))
    for method, url in (("GET", POLICIES), ("GET", f"{POLICIES}/{made['id']}")):
        resp = await client.request(method, url, headers=owner.auth)
        body = await assert_problem(resp, 404, "policies_off")
        assert "CLEANUP_POLICIES" in body["detail"]
    # Nor does the worker run a due policy while they are off.
    async with job_context(off) as ctx:
        assert await run_due_policies(ctx) == 0
    assert await hidden(factory.pool, posts) == {"hidden"}


async def test_a_run_the_sites_minute_held_back_stays_due_and_the_tick_stops(
    aiohttp_client: Any, settings: Any, factory: Factory
) -> None:
    from msgspec.structs import replace

    from pmd_service.web.app import create_app

    # The site's minute holds 4 posts; each owner's own budget, far more.
    small = replace(settings, bulk_max_posts=4, bulk_changed_posts_site_per_minute=4)
    client = await aiohttp_client(create_app(small))
    (first, first_posts), (second, second_posts) = await gallery(factory), await gallery(factory)
    made = [await create(client, owner, policy()) for owner in (first, second)]
    mine = [uuid.UUID(m["id"]) for m in made]
    # Only these two are due (the first the longer), and no earlier write fills the minute.
    await factory.pool.execute(
        "UPDATE cleanup_policies SET enabled = false WHERE id <> ALL($1::uuid[])", mine
    )
    await age_spends(factory.pool, 7200)

    async def second_policy() -> asyncpg.Record:
        row = await factory.pool.fetchrow(
            "SELECT last_run, next_run_at <= now() AS due FROM cleanup_policies WHERE id = $1",
            mine[1],
        )
        assert row is not None
        return row

    async with job_context(small) as ctx:
        assert await run_due_policies(ctx) == 2
        assert await hidden(factory.pool, first_posts) == {"old1", "old2", "old3", "hidden"}
        # The minute's last post; the rest waits for the next minute, not the next week.
        assert await hidden(factory.pool, second_posts) == {"old1", "hidden"}
        row = await second_policy()
        assert row["due"] and (row["last_run"]["status"], row["last_run"]["left_count"]) == (
            "deferred",
            2,
        )
        # The minute is full: a tick runs it once, changes nothing, and stops there.
        assert await run_due_policies(ctx) == 1
        assert (await second_policy())["due"]
        await age_spends(factory.pool, 61)
        assert await run_due_policies(ctx) == 1
    assert await hidden(factory.pool, second_posts) == {"old1", "old2", "old3", "hidden"}
    row = await second_policy()
    assert not row["due"] and row["last_run"]["status"] == "ok"


@pytest.mark.parametrize("column_checked", [True, False], ids=["column-known", "column-due"])
async def test_a_tick_out_of_reach_of_its_database_says_so_and_leaves_the_policy_due(
    client: Client,
    factory: Factory,
    settings: Any,
    caplog: Any,
    monkeypatch: pytest.MonkeyPatch,
    column_checked: bool,
) -> None:
    from pmd_service.jobs.context import state

    _, posts, made = await gallery_policy(client, factory)
    if not column_checked:  # the host's promoted_at is due to be checked again at this tick
        monkeypatch.setattr(columns, "_known", {})
    async with job_context(settings) as ctx:
        await state(ctx).pool.close()  # as a worker cut off from its database finds it
        assert await run_due_policies(ctx) == 0
    # One warning, not arq's ERROR and traceback of a failed cron.
    warned = [r for r in caplog.records if r.name == "pmd_service.features.posts.policies.runs"]
    assert [r.levelname for r in warned] == ["WARNING"]
    assert await hidden(factory.pool, posts) == {"hidden"}
    assert await factory.pool.fetchval(
        "SELECT next_run_at <= now() FROM cleanup_policies WHERE id = $1", uuid.UUID(made["id"])
    )


async def test_policies_due_together_run_in_one_tick_each_its_own_run(
    aiohttp_client: Any, settings: Any, factory: Factory
) -> None:
    import msgspec

    from pmd_service.web.app import create_app

    # An owner's minute holds 4 posts: their two policies, run together, share it.
    small = msgspec.structs.replace(
        settings,
        bulk_max_posts=4,
        bulk_changed_posts_per_minute=4,
        bulk_changed_posts_per_hour=100,
    )
    client = await aiohttp_client(create_app(small))
    galleries = [await gallery(factory) for _ in range(3)]
    made = [await create(client, owner, policy()) for owner, _ in galleries]
    (first, first_posts), *_ = galleries
    also = await create(client, first, policy(name="Also old", keep={"hashtags": ["none"]}))
    await factory.pool.execute(
        "UPDATE cleanup_policies SET enabled = false WHERE id <> ALL($1::uuid[])",
        [uuid.UUID(m["id"]) for m in [*made, also]],
    )
    await age_spends(factory.pool, 7200)
    rings: list[str] = []
    doorbell = await asyncpg.connect(settings.direct_url)  # LISTEN needs a session of its own
    await doorbell.add_listener("pmd_stream_events", lambda *ring: rings.append(ring[3]))
    try:
        async with job_context(small) as ctx:
            assert await run_due_policies(ctx) == 4
        # PostgreSQL sends a session its pending rings before it answers its next statement.
        await doorbell.execute("SELECT 1")
    finally:
        await doorbell.close()
    # Their events went in at once, as the batch's last statement: one ring for the four.
    assert len(rings) == 1
    # The first owner's second run had the one post of the minute the first left.
    assert await hidden(factory.pool, first_posts) == {"old1", "old2", "old3", "kept", "hidden"}
    for _, posts in galleries[1:]:
        assert await hidden(factory.pool, posts) == {"old1", "old2", "old3", "hidden"}
    runs_of = await factory.pool.fetch(
        "SELECT id, last_run FROM cleanup_policies WHERE id = ANY($1::uuid[])",
        [uuid.UUID(m["id"]) for m in [*made, also]],
    )
    lasts = {str(r["id"]): r["last_run"] for r in runs_of}
    assert [(lasts[m["id"]]["status"], lasts[m["id"]]["changed_count"]) for m in made] == [
        ("ok", 3)
    ] * 3
    assert (lasts[also["id"]]["status"], lasts[also["id"]]["left_count"]) == ("deferred", 1)
    # Each run its own entry and its own event, with its own posts, in the order they ran.
    for (owner, posts), m in zip(galleries, made, strict=True):
        actions = (await (await client.get("/api/pmd/actions", headers=owner.auth)).json())["items"]
        events = await factory.pool.fetch(
            "SELECT subject_id, payload FROM stream_events "
            "WHERE user_id = $1 AND kind = 'posts' ORDER BY id",
            owner.id,
        )
        mine = [a for a in actions if a["policy_id"] == m["id"]]
        assert [(a["changed_count"], a["undo"] is not None) for a in mine] == [(3, True)]
        old = sorted(posts[k] for k in ("old1", "old2", "old3"))
        if owner is first:
            (second,) = [a for a in actions if a["policy_id"] == also["id"]]
            assert second["changed_count"] == 1
            assert [(str(e["subject_id"]), e["payload"]["post_ids"]) for e in events] == [
                (mine[0]["id"], old),
                (second["id"], [posts["kept"]]),
            ]
        else:
            assert [(str(e["subject_id"]), e["payload"]["post_ids"]) for e in events] == [
                (mine[0]["id"], old)
            ]
    spent = await factory.pool.fetchval(
        "SELECT sum(posts) FROM write_spends WHERE user_id = $1", first.id
    )
    assert spent == 4


@pytest.mark.parametrize(("share", "people"), [(1.0, True), (0.25, True), (0.25, False)])
async def test_the_tick_rests_between_batches_for_its_busy_share_while_people_are_on(
    client: Client,
    factory: Factory,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    share: float,
    people: bool,
) -> None:
    from types import SimpleNamespace

    import msgspec

    from pmd_service.features.posts.policies import runs as runs_module

    made = [(await gallery_policy(client, factory))[2] for _ in range(3)]
    await factory.pool.execute(
        "UPDATE cleanup_policies SET enabled = false WHERE id <> ALL($1::uuid[])",
        [uuid.UUID(m["id"]) for m in made],
    )
    rests: list[float] = []

    async def rest(seconds: float) -> None:
        rests.append(seconds)

    monkeypatch.setattr(runs_module, "BATCH_RUNS", 2)
    monkeypatch.setattr(runs_module, "asyncio", SimpleNamespace(sleep=rest))
    await client.app[PRESENCE].close()  # the requests above: their mark is in before it is set
    async with job_context(msgspec.structs.replace(settings, policy_busy_share=share)) as ctx:
        if people:
            await ctx["redis"].set(presence.KEY, b"1", px=3_600_000)
        else:
            await ctx["redis"].delete(presence.KEY)
        assert await run_due_policies(ctx) == 3
        await ctx["redis"].delete(presence.KEY)  # an hour's mark is this test's alone
    # A rest after each batch that ran (two and one), none once nothing is due, none at night.
    assert len(rests) == (2 if share < 1 and people else 0)
    assert all(r > 0 for r in rests)

"""Recurring exports (issue 45): `repeat_every_days` and `repeat_times` make a schedule, a row
the sweep reads, so the next export starts when due even after the worker that made the first
is gone; each later one is incremental against the one before; the schedule is shown in the
list and cancelled with DELETE /api/pmd/exports/schedule; every bad value is a 400 whatever
the state. Real PostgreSQL and Redis; arq's worker in burst mode, a new one each time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from msgspec.structs import replace

from pmd_service.core.settings import Settings
from pmd_service.worker import worker_options
from support.seeding import Factory, UserRow
from tests.helpers import Client, assert_problem, run_worker


def new_worker_options(settings: Settings) -> dict[str, Any]:
    """The worker's own cron jobs (its sweep runs at every worker's start), as a new worker
    has them: arq keeps a cron job's next run on its object, shared by every Worker."""
    crons = worker_options(settings)["cron_jobs"]
    return {"cron_jobs": [dataclasses.replace(job, next_run=None) for job in crons]}


@pytest.fixture
def small(small: Settings) -> Settings:
    return replace(small, export_incremental_cooldown_seconds=3600)


async def listed(client: Client, user: UserRow) -> dict[str, Any]:
    resp = await client.get("/api/pmd/exports", headers=user.auth)
    assert resp.status == 200
    found: dict[str, Any] = await resp.json()
    return found


async def time_passes(pool: asyncpg.Pool, user: UserRow) -> None:
    """The schedule's next date reached, as days later."""
    await pool.execute(
        "UPDATE export_schedules SET next_at = now() - interval '1 minute' WHERE user_id = $1",
        user.id,
    )


async def test_a_schedule_runs_its_next_export_after_a_worker_restart(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool
) -> None:
    owner = await factory.user()
    first_posts = [await factory.post(owner, title=f"Work {i}") for i in range(3)]
    resp = await ex_client.post(
        "/api/pmd/exports", json={"repeat_every_days": 60, "repeat_times": 3}, headers=owner.auth
    )
    assert resp.status == 202, await resp.text()
    first = await resp.json()
    schedule = (await listed(ex_client, owner))["schedule"]
    assert schedule["every_days"] == 60 and schedule["remaining"] == 2
    assert schedule["last_export_id"] == first["id"]
    next_at = datetime.fromisoformat(schedule["next_at"])
    assert timedelta(days=59) < next_at - datetime.now(UTC) <= timedelta(days=60)
    await run_worker(small)  # this worker builds the first, then is gone

    # A new worker starts: nothing is due yet.
    await run_worker(small, **new_worker_options(small))
    assert await pool.fetchval("SELECT count(*) FROM exports WHERE user_id = $1", owner.id) == 1

    new = await factory.post(owner, title="Made since")
    await time_passes(pool, owner)
    # Another new worker: its sweep at start finds the schedule due and starts the next
    # export, incremental against the first, which it then builds.
    await run_worker(small, **new_worker_options(small))
    items = (await listed(ex_client, owner))["items"]
    assert len(items) == 2
    second = items[0]
    assert second["status"] == "ready", second
    assert second["follows_export_id"] == first["id"]
    assert second["artwork_count"] == 1 and second["parts"][0]["artwork_count"] == 1
    schedule = (await listed(ex_client, owner))["schedule"]
    assert schedule["remaining"] == 1 and schedule["last_export_id"] == second["id"]
    assert datetime.fromisoformat(schedule["next_at"]) - datetime.now(UTC) > timedelta(days=59)
    assert new.id not in [p.id for p in first_posts]

    # Due again with nothing new: no export, and the schedule has run its course.
    await time_passes(pool, owner)
    await run_worker(small, **new_worker_options(small))
    assert await pool.fetchval("SELECT count(*) FROM exports WHERE user_id = $1", owner.id) == 2
    assert (await listed(ex_client, owner))["schedule"] is None


async def test_cancelling_a_schedule_stops_the_next_exports(
    ex_client: Client, factory: Factory, small: Settings, pool: asyncpg.Pool
) -> None:
    owner = await factory.user()
    await factory.post(owner)
    resp = await ex_client.post(
        "/api/pmd/exports", json={"repeat_every_days": 7, "repeat_times": 4}, headers=owner.auth
    )
    assert resp.status == 202
    await run_worker(small)
    # A second schedule while one runs is refused, saying how to cancel it.
    resp = await ex_client.post(
        "/api/pmd/exports", json={"repeat_every_days": 7, "repeat_times": 4}, headers=owner.auth
    )
    problem = await assert_problem(resp, 409, "export_scheduled")
    assert "DELETE /api/pmd/exports/schedule" in problem["detail"]

    resp = await ex_client.delete("/api/pmd/exports/schedule", headers=owner.auth)
    assert resp.status == 204
    assert (await listed(ex_client, owner))["schedule"] is None
    await factory.post(owner, title="after the cancel")
    await time_passes(pool, owner)
    await run_worker(small, **new_worker_options(small))
    assert await pool.fetchval("SELECT count(*) FROM exports WHERE user_id = $1", owner.id) == 1
    resp = await ex_client.delete("/api/pmd/exports/schedule", headers=owner.auth)
    assert resp.status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"repeat_every_days": 0, "repeat_times": 3}, "repeat_every_days"),
        ({"repeat_every_days": -5, "repeat_times": 3}, "repeat_every_days"),
        ({"repeat_every_days": 366, "repeat_times": 3}, "repeat_every_days"),
        ({"repeat_every_days": 60, "repeat_times": 1}, "repeat_times"),
        ({"repeat_every_days": 60, "repeat_times": 0}, "repeat_times"),
        ({"repeat_every_days": 60, "repeat_times": 13}, "repeat_times"),
        ({"repeat_every_days": 60}, "repeat_times"),
        ({"repeat_times": 6}, "repeat_every_days"),
        ({"repeat_every_days": 60, "repeat_times": 6, "since": "last"}, "since"),
    ],
)
async def test_every_bad_schedule_value_is_a_400_whatever_the_state(
    ex_client: Client, factory: Factory, small: Settings, body: dict[str, Any], field: str
) -> None:
    owner = await factory.user()
    await factory.post(owner)
    # An export running, and both cooldowns running: the bad value is still what is said.
    resp = await ex_client.post("/api/pmd/exports", json={}, headers=owner.auth)
    assert resp.status == 202
    resp = await ex_client.post("/api/pmd/exports", json=body, headers=owner.auth)
    assert resp.status == 400, await resp.text()
    problem = await resp.json()
    assert [e["field"] for e in problem["errors"]] == [field]
    assert field in problem["detail"]

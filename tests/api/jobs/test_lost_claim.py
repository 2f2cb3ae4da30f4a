"""A run whose claim a newer run took over (its worker stalled past the heartbeat) writes
nothing: its progress, publish, failure and release each leave the newer run's row as it was."""

from __future__ import annotations

import concurrent.futures
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.core.codes import Code
from pmd_service.features.bdr.archive import BdrZip
from pmd_service.features.bdr.job import BDR, Run
from pmd_service.host.mentions import NONE, Mentions
from pmd_service.jobs.context import state
from pmd_service.jobs.driver import publish_archive
from pmd_service.jobs.kind import Claim, Settled
from pmd_service.zipbuild.build import BuildCancelled, BuildResult
from pmd_service.zipbuild.content import Plan
from support.seeding import Factory
from tests.helpers import requested

Client = TestClient[Any, Any]
STALE_SECONDS = 60.0
SQL_ROW = "SELECT * FROM batch_download_requests WHERE id = $1"


async def claim(pool: asyncpg.Pool, bdr_id: uuid.UUID) -> Claim:
    """The row claimed by a new run, as the driver claims it."""
    token = uuid.uuid4()
    asked = {"id": bdr_id, "token": token, "stale": STALE_SECONDS}
    row = await pool.fetchrow(*BDR.sql_claim.bind(asked))
    assert row is not None, "the row could not be claimed"
    return Claim(f"BDR {bdr_id}", bdr_id, token, row)


async def step(which: str, worker_ctx: dict[str, Any], stale: Claim) -> None:
    """What a run that lost its claim attempts, `which` of its writes."""
    st = state(worker_ctx)
    run = Run(st, stale)
    resolved: concurrent.futures.Future[Mentions] = concurrent.futures.Future()
    resolved.set_result(NONE)
    archive = BdrZip(run, Plan([], [], {}), "owner", "sqid", resolved)
    if which == "report":
        assert await archive.report(1) is False
    elif which == "publish":
        settled = Settled(BuildResult(size=1, sha256="0" * 64), [])
        with pytest.raises(BuildCancelled):
            await publish_archive(st, BDR, stale, archive, "bdr/stale.zip", settled)
    elif which == "fail":
        assert await run.fail("a stale run's failure", Code.INTERNAL, []) is False
    else:
        await st.pool.execute(*BDR.sql_release.bind(stale.owned | {"defer": 0.0}))


@pytest.mark.parametrize("which", ["report", "publish", "fail", "release"])
async def test_a_run_that_lost_its_claim_leaves_the_newer_runs_row_alone(
    which: str, client: Client, factory: Factory, worker_ctx: dict[str, Any]
) -> None:
    _, _, [item] = await requested(client, factory)
    bdr_id = uuid.UUID(item["id"])
    pool = factory.pool
    stale = await claim(pool, bdr_id)
    # Its heartbeat stopped long ago: a newer run takes the row over, still processing.
    await pool.execute(
        "UPDATE batch_download_requests SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
        bdr_id,
    )
    newer = await claim(pool, bdr_id)
    held = await pool.fetchrow(SQL_ROW, bdr_id)
    assert held is not None
    assert (held["status"], held["claim_token"]) == ("processing", newer.token)
    await step(which, worker_ctx, stale)
    assert dict(await pool.fetchrow(SQL_ROW, bdr_id) or {}) == dict(held)

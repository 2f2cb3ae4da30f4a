"""`process_bdr`: claim a BDR, build its ZIP, publish it atomically, tell the user.

A job may run more than once (arq re-runs jobs of a dead worker; the sweep re-enqueues). The
claim is one UPDATE that only one run can win, and every later write of the run is guarded by
the claim token, so a run that lost its claim (cancelled, or taken over after going stale)
can never overwrite the row. Status is `failed` only when no retry is left (setting it before
retrying would mean the retries never run).

The parts: run.py (one claimed run), sql.py (its statements), failures.py (what is retried
and what the user is told).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import asyncpg
from arq import Retry

from ...core import error_reports
from ...core.logs import request_id_set
from ..attempts import attempt, claimed
from ..context import WorkerState, state
from ..mail.notify import send_bdr_email
from .run import Run
from .sql import SQL_CLAIM, SQL_RELEASE_FOR_RETRY

log = logging.getLogger(__name__)


async def process_bdr(ctx: dict[str, Any], bdr_id: str) -> str:
    st = state(ctx)
    try:
        uid = uuid.UUID(bdr_id)
    except ValueError:
        log.error("process_bdr called with %r, not a UUID", bdr_id)
        return "invalid"
    error_reports.tag("bdr_id", bdr_id)  # arq's integration gives each job a scope of its own
    token = uuid.uuid4()
    stale = float(st.settings.bdr_stale_seconds)
    claim = await claimed(
        f"BDR {uid}",
        lambda: st.pool.fetchrow(SQL_CLAIM, uid, token, stale),
        st.settings.bdr_retry_base_seconds,
    )
    if claim is None:
        return "not claimable"  # finished, cancelled, or another run holds it
    # The id of the POST that asked for it: every line of this run and its email carry it.
    with request_id_set(claim["request_id"]):
        return await _run(st, uid, token, claim)


async def _run(st: WorkerState, uid: uuid.UUID, token: uuid.UUID, claim: asyncpg.Record) -> str:
    run = Run(st, uid, token, claim)
    started = time.monotonic()
    try:
        with st.building_bdr():
            outcome = await _attempt(st, run)
    except Retry:
        st.metrics.finished("retry", time.monotonic() - started)
        raise
    st.metrics.finished(outcome, time.monotonic() - started, run.result)
    if outcome != "cancelled" and claim["send_email"]:
        await send_bdr_email(st.pool, st.settings, uid)
    return outcome


async def _attempt(st: WorkerState, run: Run) -> str:
    """ready, failed or cancelled; raises Retry when a later attempt may succeed."""
    uid, token = run.bdr_id, run.token

    async def release(defer: float) -> None:
        await st.pool.execute(SQL_RELEASE_FOR_RETRY, uid, token, defer)

    return await attempt(
        f"BDR {uid}", lambda: run.claim["attempts"], run.build, run.fail, release,
        st.settings.bdr_retry_base_seconds,
    )  # fmt: skip

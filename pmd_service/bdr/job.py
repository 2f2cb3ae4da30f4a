"""`process_bdr`: claim a BDR, build its ZIP, publish it atomically, tell the user.

A job may run more than once (arq re-runs jobs of a dead worker; the sweep re-enqueues). The
claim is one UPDATE that only one run can win, and every later write of the run is guarded by
the claim token, so a run that lost its claim (cancelled, or taken over after going stale)
can never overwrite the row. Status is `failed` only when no retry is left (setting it before
retrying would mean the retries never run).

The parts: claims.py (the claim and its attempt), run.py (one claimed run), sql.py (its
statements), failures.py (what is retried and what the user is told).
"""

from __future__ import annotations

import time
from typing import Any

from arq import Retry

from ..jobs.claims import Claim, attempt_claimed, process_claimed
from ..jobs.context import WorkerState
from ..mail.notify import send_bdr_email
from .job_run import Run
from .job_sql import SQL_CLAIM, SQL_RELEASE_FOR_RETRY


async def process_bdr(ctx: dict[str, Any], bdr_id: str) -> str:
    return await process_claimed(ctx, "bdr", "BDR", bdr_id, SQL_CLAIM, _run)


async def _run(st: WorkerState, claim: Claim) -> str:
    run = Run(st, claim.id, claim.token, claim.row)
    started = time.monotonic()
    try:
        with st.building_bdr():
            outcome = await attempt_claimed(
                st, claim, SQL_RELEASE_FOR_RETRY, lambda: claim.row["attempts"], run.build, run.fail
            )
    except Retry:
        st.metrics.finished("retry", time.monotonic() - started)
        raise
    st.metrics.finished(outcome, time.monotonic() - started, run.result)
    if outcome != "cancelled" and claim.row["send_email"]:
        await send_bdr_email(st.pool, st.settings, claim.id)
    return outcome

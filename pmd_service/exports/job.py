"""`process_export`: claim an export, build its parts, tell the user.

As for BDRs (bdr/job.py): one UPDATE claims the row, every later write is guarded by the
claim token, transient failures retry with backoff, and status is `failed` only when no retry
is left. An export runs for as long as its parts take; the sweep takes back one whose worker
is gone (its heartbeat stops), and the next run keeps every part already published.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..jobs.claims import Claim, attempt_claimed, process_claimed
from ..jobs.context import WorkerState
from ..mail.notify import send_export_email
from .job_run import ExportRun
from .job_sql import SQL_CLAIM, SQL_RELEASE_FOR_RETRY

log = logging.getLogger(__name__)


async def process_export(ctx: dict[str, Any], export_id: str) -> str:
    return await process_claimed(ctx, "export", "export", export_id, SQL_CLAIM, _run)


async def _run(st: WorkerState, claim: Claim) -> str:
    run = ExportRun(st, claim.id, claim.token, claim.row)
    started = time.monotonic()
    outcome = await attempt_claimed(
        st, claim, SQL_RELEASE_FOR_RETRY, lambda: run.attempts, run.build, run.fail
    )
    log.info("export %s: %s after %.1f s", claim.id, outcome, time.monotonic() - started)
    if outcome != "cancelled" and claim.row["send_email"]:
        await send_export_email(st.pool, st.settings, claim.id)
    return outcome

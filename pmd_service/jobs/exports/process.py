"""`process_export`: claim an export, build its parts, tell the user.

As for BDRs (jobs/bdr/process.py): one UPDATE claims the row, every later write is guarded by the
claim token, transient failures retry with backoff, and status is `failed` only when no retry
is left. An export runs for as long as its parts take; the sweep takes back one whose worker
is gone (its heartbeat stops), and the next run keeps every part already published.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from ...core import error_reports
from ...core.logs import request_id_set
from ..attempts import attempt, claimed
from ..context import state
from ..mail.notify import send_export_email
from .run import ExportRun
from .sql import SQL_CLAIM, SQL_RELEASE_FOR_RETRY

log = logging.getLogger(__name__)


async def process_export(ctx: dict[str, Any], export_id: str) -> str:
    st = state(ctx)
    try:
        uid = uuid.UUID(export_id)
    except ValueError:
        log.error("process_export called with %r, not a UUID", export_id)
        return "invalid"
    error_reports.tag("export_id", export_id)
    token = uuid.uuid4()
    stale = float(st.settings.bdr_stale_seconds)
    claim = await claimed(
        f"export {uid}",
        lambda: st.pool.fetchrow(SQL_CLAIM, uid, token, stale),
        st.settings.bdr_retry_base_seconds,
    )
    if claim is None:
        return "not claimable"  # finished, cancelled, or another run holds it
    with request_id_set(claim["request_id"]):
        run = ExportRun(st, uid, token, claim)
        started = time.monotonic()
        outcome = await _attempt(run)
        log.info("export %s: %s after %.1f s", uid, outcome, time.monotonic() - started)
        if outcome != "cancelled" and claim["send_email"]:
            await send_export_email(st.pool, st.settings, uid)
        return outcome


async def _attempt(run: ExportRun) -> str:
    """ready, failed or cancelled; raises Retry when a later attempt may succeed."""
    uid, token, st = run.export_id, run.token, run.st

    async def release(defer: float) -> None:
        await st.pool.execute(SQL_RELEASE_FOR_RETRY, uid, token, defer)

    return await attempt(
        f"export {uid}", lambda: run.attempts, run.build, run.fail, release,
        st.settings.bdr_retry_base_seconds,
    )  # fmt: skip

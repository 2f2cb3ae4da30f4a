"""`process_bdr`: claim a BDR, build its ZIP, publish it atomically, tell the user.

A job may run more than once (arq re-runs jobs of a dead worker; the sweep re-enqueues). The
claim is one UPDATE that only one run can win, and every later write of the run is guarded by
the claim token, so a run that lost its claim (cancelled, or taken over after going stale)
can never overwrite the row. Status is `failed` only when no retry is left (setting it before
retrying would mean the retries never run).

The parts: run.py (one claimed run), run_sql.py (its statements), failures.py (what is retried
and what the user is told).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Any

import asyncpg
from arq import Retry

from ..core import error_reports
from ..core.logs import request_id_set
from .context import WorkerState, state
from .failures import (
    BACKOFF_CAP_SECONDS,
    MAX_ATTEMPTS,
    TRANSIENT,
    UNEXPECTED_MESSAGE,
    PermanentError,
    transient_message,
)
from .notify import send_bdr_email
from .run import Run
from .run_sql import SQL_CLAIM, SQL_RELEASE_FOR_RETRY
from .zipbuild import BuildCancelled

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
    claim = await st.pool.fetchrow(SQL_CLAIM, uid, token, float(st.settings.bdr_stale_seconds))
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
    uid, attempts = run.bdr_id, run.claim["attempts"]
    if attempts > MAX_ATTEMPTS:
        await run.fail(transient_message(TimeoutError()))
        return "failed"
    try:
        await run.build()
        return "ready"
    except BuildCancelled:
        return "cancelled"
    except PermanentError as exc:
        await run.fail(str(exc))
    except TRANSIENT as exc:
        if attempts >= MAX_ATTEMPTS:
            log.warning("BDR %s: attempt %d failed (%r); giving up", uid, attempts, exc)
            await run.fail(transient_message(exc))
        else:
            defer = min(
                BACKOFF_CAP_SECONDS, st.settings.bdr_retry_base_seconds * 4 ** (attempts - 1)
            )
            log.warning(
                "BDR %s: attempt %d failed (%r); retry in %.0f s", uid, attempts, exc, defer
            )
            with contextlib.suppress(*TRANSIENT):
                await st.pool.execute(SQL_RELEASE_FOR_RETRY, uid, run.token, defer)
            raise Retry(defer=defer) from exc
    except Exception:
        log.exception("BDR %s: unexpected error", uid)
        await run.fail(UNEXPECTED_MESSAGE)
    return "failed"

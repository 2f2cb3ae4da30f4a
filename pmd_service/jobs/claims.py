"""The claim of a BDR's or an export's row by one run of its job, and that run's attempt.

A job may run more than once (arq re-runs jobs of a dead worker; the sweep re-enqueues). The
claim is one UPDATE that only one run can win; every later write of the run is guarded by the
claim token, so a run that lost its claim can never overwrite the row."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..core import error_reports
from ..core.logs import request_id_set
from .attempts import attempt, claimed
from .context import WorkerState, state
from .failures import PermanentError

# The statements every claimed job shares (bdr/job_sql.py and exports/job_sql.py use them):
# which row a run may claim, the guard of every write of the run that holds it, and its owner.
# Pending, or processing but held by no run (released for a retry) or by a run whose heartbeat
# stopped $3 seconds ago (its worker is gone).
CLAIMABLE = """(status = 'pending'
       OR (status = 'processing'
           AND (claim_token IS NULL OR heartbeat_at < now() - make_interval(secs => $3))))"""
# Row $1 still held by the run of claim token $2.
OWNED = "id = $1 AND claim_token = $2 AND status = 'processing'"
# Hands row $1 back for a retry in $3 seconds, if the run of token $2 still holds it.
RELEASE_FOR_RETRY = f"""
SET claim_token = NULL, heartbeat_at = NULL, retry_at = now() + make_interval(secs => $3)
WHERE {OWNED}
"""
SQL_OWNER = "SELECT handle, public_sqid FROM users WHERE id = $1"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A row this run holds under `token`; `what` names it in log lines ("BDR <id>")."""

    what: str
    id: uuid.UUID
    token: uuid.UUID
    row: asyncpg.Record


async def process_claimed(
    ctx: dict[str, Any],
    kind: str,
    label: str,
    raw_id: str,
    sql_claim: str,
    run: Callable[[WorkerState, Claim], Awaitable[str]],
) -> str:
    """The job `process_<kind>(raw_id)`: `run` the row once claimed, else "invalid" (not a
    UUID) or "not claimable" (finished, cancelled, or another run holds it)."""
    st = state(ctx)
    claim = await _claim(st, kind, label, raw_id, sql_claim)
    if isinstance(claim, str):
        return claim
    # The id of the POST that asked for it: every line of this run and its email carry it.
    with request_id_set(claim.row["request_id"]):
        return await run(st, claim)


async def _claim(
    st: WorkerState, kind: str, label: str, raw_id: str, sql_claim: str
) -> Claim | str:
    try:
        uid = uuid.UUID(raw_id)
    except ValueError:
        log.error("process_%s called with %r, not a UUID", kind, raw_id)
        return "invalid"
    error_reports.tag(f"{kind}_id", raw_id)  # arq's integration gives each job a scope of its own
    token = uuid.uuid4()
    stale = float(st.settings.bdr_stale_seconds)
    what = f"{label} {uid}"
    row = await claimed(
        what,
        lambda: st.pool.fetchrow(sql_claim, uid, token, stale),
        st.settings.bdr_retry_base_seconds,
    )
    if row is None:
        return "not claimable"
    return Claim(what, uid, token, row)


async def attempt_claimed(
    st: WorkerState,
    claim: Claim,
    sql_release: str,
    attempts: Callable[[], int],
    build: Callable[[], Awaitable[None]],
    fail: Callable[[str], Awaitable[object]],
) -> str:
    """ready, failed or cancelled; raises Retry when a later attempt may succeed, after
    `sql_release` ($1 id, $2 token, $3 seconds) handed the row back for it."""

    async def release(defer: float) -> None:
        await st.pool.execute(sql_release, claim.id, claim.token, defer)

    return await attempt(
        claim.what, attempts, build, fail, release, st.settings.bdr_retry_base_seconds
    )


async def job_owner(pool: asyncpg.Pool, user_id: int, what: str) -> asyncpg.Record:
    """The handle and public sqid of the user a job's row is for (`what`: "download")."""
    user = await pool.fetchrow(SQL_OWNER, user_id)
    if user is None:
        raise PermanentError(f"The account this {what} belongs to no longer exists.")
    return user

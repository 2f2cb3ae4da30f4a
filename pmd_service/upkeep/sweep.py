"""Every minute: no request is ever stuck, and no owed email is forgotten.

- `pending` rows older than 30 s are announced if the server did not, and (re-)enqueued: the server commits before it enqueues, so
  a Redis outage at that moment leaves a row only this finds.
- `processing` rows whose worker is gone (heartbeat stale, or a scheduled retry long overdue)
  are enqueued under a fresh job id; the claim lets exactly one run take them over.
- Emails whose SMTP send failed are retried.
- With ZIPs in a bucket: multipart uploads of runs that are over (a worker killed mid-upload)
  are aborted, so their parts stop taking space.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from ..bdr import queue as bdr_queue
from ..exports import queue as export_queue
from ..jobs.context import state
from ..jobs.failures import TRANSIENT
from ..mail.notify import send_owed_emails, send_owed_export_emails
from ..storage.object_tidy import abort_dead_uploads
from .schedules import start_due_exports

log = logging.getLogger(__name__)

RETRY_GRACE_SECONDS = 60
# A pending row whose plain job id arq still holds, queued but not taken (a backlog), gets a
# fresh job id only this late, at most one per such period: a backlog is not doubled.
LATE_PENDING_SECONDS = 300
# An upload under the prefix whose name is not the service's: aborted only once this old.
UPLOAD_MAX_AGE_SECONDS = 3600

# A server that stopped between committing a request and announcing it (see bdr.service).
SQL_ANNOUNCE_LEFT = """
UPDATE batch_download_requests SET announced = true
WHERE NOT announced AND created_at < now() - make_interval(secs => $1)
"""
# Pending for $1 seconds.
_STUCK_PENDING = "status = 'pending' AND created_at < now() - make_interval(secs => $1)"
# Processing, but its run's heartbeat stopped $1 seconds ago, or its scheduled retry is $2
# seconds overdue.
_ORPHANED = """status = 'processing'
  AND ((claim_token IS NOT NULL AND heartbeat_at < now() - make_interval(secs => $1))
       OR (claim_token IS NULL AND coalesce(retry_at, updated_at) < now() - make_interval(secs => $2)))"""

SQL_STUCK_PENDING = f"""
SELECT id, extract(epoch FROM now() - created_at)::float8 AS age
FROM batch_download_requests
WHERE {_STUCK_PENDING}
ORDER BY created_at LIMIT 500
"""
SQL_ORPHANED = f"""
SELECT id, attempts FROM batch_download_requests WHERE {_ORPHANED}
ORDER BY created_at LIMIT 500
"""

# Exports: the same two cases. No export blocks a new one for ever: one whose worker is gone is
# taken back within a minute or so of its heartbeat stopping.
SQL_EXPORTS_STUCK_PENDING = f"""
SELECT id, extract(epoch FROM now() - created_at)::float8 AS age FROM exports
WHERE {_STUCK_PENDING}
ORDER BY created_at LIMIT 100
"""
SQL_EXPORTS_ORPHANED = f"""
SELECT id, attempts FROM exports WHERE {_ORPHANED}
ORDER BY created_at LIMIT 100
"""


Enqueue = Callable[[ArqRedis, uuid.UUID, str | None], Awaitable[bool]]
JobId = Callable[[uuid.UUID], str]


async def _requeue(
    ctx: dict[str, Any], enqueue: Enqueue, job_id: JobId, stuck_sql: str, orphaned_sql: str
) -> tuple[int, int]:
    """(re-enqueued, taken over) of one kind of job: pending rows past the grace, and rows
    whose worker is gone."""
    st = state(ctx)
    redis: ArqRedis = ctx["redis"]
    requeued = retaken = 0
    grace = float(st.settings.bdr_pending_grace_seconds)
    for row in await st.pool.fetch(stuck_sql, grace):
        if await enqueue(redis, row["id"], None):
            requeued += 1
        elif await redis.exists(in_progress_key_prefix + job_id(row["id"])):
            # Taken, yet unclaimed past the grace (a run claims first thing): the worker died
            # between dequeuing and claiming, and arq frees the id only after the job timeout
            # (a cluster run's lost host left a BDR pending for minutes). A fresh id now, one
            # per grace period; the claim lets one run build it.
            held = f"held{int(row['age'] // max(grace, 1.0))}"
            requeued += await enqueue(redis, row["id"], held)
        elif row["age"] >= LATE_PENDING_SECONDS:
            late = f"late{int(row['age'] // LATE_PENDING_SECONDS)}"
            requeued += await enqueue(redis, row["id"], late)
    for row in await st.pool.fetch(
        orphaned_sql, float(st.settings.bdr_stale_seconds), float(RETRY_GRACE_SECONDS)
    ):
        retaken += await enqueue(redis, row["id"], f"take{row['attempts']}")
    return requeued, retaken


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    try:
        return await _sweep(ctx)
    except TRANSIENT as exc:
        # The database, Redis or the network out of reach: a condition the sweep exists to
        # ride out, not a bug. The next sweep, a minute later, does what this one could not;
        # raised, arq would log it as an ERROR with a traceback (and the error reports too).
        log.warning("sweep: stopped by %s (%s); the next sweep runs in a minute",
                    type(exc).__name__, exc)  # fmt: skip
        return {"requeued": 0, "retaken": 0, "emails": 0, "uploads_aborted": 0}


async def _sweep(ctx: dict[str, Any]) -> dict[str, int]:
    st = state(ctx)
    await st.pool.execute(SQL_ANNOUNCE_LEFT, float(st.settings.bdr_pending_grace_seconds))
    requeued, retaken = await _requeue(
        ctx, bdr_queue.enqueue_bdr, bdr_queue.job_id, SQL_STUCK_PENDING, SQL_ORPHANED
    )
    exports = await _requeue(
        ctx,
        export_queue.enqueue_export,
        export_queue.export_job_id,
        SQL_EXPORTS_STUCK_PENDING,
        SQL_EXPORTS_ORPHANED,
    )
    requeued += exports[0]
    retaken += exports[1]
    requeued += await start_due_exports(st, ctx["redis"])
    aborted = 0
    bucket = st.zips.bucket
    if bucket is not None:
        try:
            aborted = await abort_dead_uploads(
                st.pool, bucket, st.settings.s3_access, UPLOAD_MAX_AGE_SECONDS
            )
        except Exception:  # the store being down must not stop the rest of the sweep
            log.warning("sweep: could not list or abort multipart uploads", exc_info=True)
    emails = await send_owed_emails(st.pool, st.settings)
    emails += await send_owed_export_emails(st.pool, st.settings)
    if requeued or retaken or emails or aborted:
        log.info("sweep: %d pending re-enqueued, %d orphaned taken over, %d emails sent, "
                 "%d uploads aborted", requeued, retaken, emails, aborted)  # fmt: skip
    return {"requeued": requeued, "retaken": retaken, "emails": emails, "uploads_aborted": aborted}

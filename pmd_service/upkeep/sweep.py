"""Every minute: pending rows past the grace (re-)enqueued, rows whose worker is gone taken over
under a fresh job id, owed emails sent, and a bucket's dead multipart uploads aborted."""

from __future__ import annotations

import logging
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from ..features.registry import EMAILS
from ..features.registry import JOB_KINDS as KINDS
from ..jobs.context import WorkerState, state
from ..jobs.failures import TRANSIENT
from ..jobs.kind import Email, JobKind
from ..mail.notify import TRIES
from ..storage.object_tidy import abort_dead_uploads

log = logging.getLogger(__name__)

RETRY_GRACE_SECONDS = 60
# A pending row arq still holds queued (a backlog) gets a fresh job id only this late, once.
LATE_PENDING_SECONDS = 300


async def _requeue(st: WorkerState, redis: ArqRedis, kind: JobKind) -> tuple[int, int]:
    """(re-enqueued, taken over) of one kind of job."""
    requeued = retaken = 0
    grace = float(st.settings.job_pending_grace_seconds)
    for row in await st.pool.fetch(*kind.sql_stuck_pending.bind({"grace": grace})):
        if await kind.queue.enqueue(redis, row["id"], None):
            requeued += 1
        elif await redis.exists(in_progress_key_prefix + kind.queue.job_id(row["id"])):
            # Taken, yet unclaimed past the grace: its worker died, so a fresh id a grace period.
            held = f"held{int(row['age'] // max(grace, 1.0))}"
            requeued += await kind.queue.enqueue(redis, row["id"], held)
        elif row["age"] >= LATE_PENDING_SECONDS:
            late = f"late{int(row['age'] // LATE_PENDING_SECONDS)}"
            requeued += await kind.queue.enqueue(redis, row["id"], late)
    orphaned = {"stale": float(st.settings.job_stale_seconds), "grace": float(RETRY_GRACE_SECONDS)}
    for row in await st.pool.fetch(*kind.sql_orphaned.bind(orphaned)):
        retaken += await kind.queue.enqueue(redis, row["id"], f"take{row['attempts']}")
    return requeued, retaken


async def _send_owed(st: WorkerState, email: Email) -> int:
    """The emails still owed of `email`'s rows, sent; how many were."""
    rows = await st.pool.fetch(*email.sql_emails_owed.bind(TRIES))
    return sum([await email.send_email(st.pool, st.settings, row["id"]) for row in rows])


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    st = state(ctx)
    requeued = retaken = aborted = 0
    try:
        for kind in KINDS:
            # The kind's own part first (a BDR left unannounced, a recurring export that is due).
            requeued += await kind.upkeep.swept(st, ctx["redis"])
            again, taken = await _requeue(st, ctx["redis"], kind)
            requeued, retaken = requeued + again, retaken + taken
        bucket = st.zips.bucket
        if bucket is not None:
            try:
                aborted = await abort_dead_uploads(st.pool, bucket, st.settings.s3_access)
            except Exception:  # the store being down must not stop the rest of the sweep
                log.warning("sweep: could not list or abort multipart uploads", exc_info=True)
        emails = sum([await _send_owed(st, owed) for owed in EMAILS])
    except TRANSIENT as exc:
        # Out of reach is what the sweep rides out, not a bug: the next sweep does the rest.
        log.warning(
            "sweep: stopped by %s (%s); the next sweep runs in a minute", type(exc).__name__, exc
        )
        return {"requeued": 0, "retaken": 0, "emails": 0, "uploads_aborted": 0}
    if requeued or retaken or emails or aborted:
        log.info(
            "sweep: %d pending re-enqueued, %d orphaned taken over, %d emails sent, "
            "%d uploads aborted",
            requeued,
            retaken,
            emails,
            aborted,
        )
    return {"requeued": requeued, "retaken": retaken, "emails": emails, "uploads_aborted": aborted}

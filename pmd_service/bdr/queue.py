"""A BDR's arq job: `process_bdr` under the job id `bdr:<id>` (jobs/queueing.py)."""

from __future__ import annotations

from ..jobs.queueing import MAX_ATTEMPTS, Queueing

# Attempts are counted in the database row, which decides when a BDR fails (a sweep-enqueued
# run is a new arq job, so arq's own count restarts). arq's limit is the same number, so arq
# never runs one job more often than the row allows; a run past it is the sweep's to fail.
QUEUE = Queueing("bdr", max_tries=MAX_ATTEMPTS, timeout=1800)

JOB_NAME = QUEUE.function
job_id = QUEUE.job_id
enqueue_bdr = QUEUE.enqueue

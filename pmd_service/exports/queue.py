"""An export's arq job: `process_export` under the job id `export:<id>` (jobs/queueing.py)."""

from __future__ import annotations

from ..jobs.queueing import Queueing

# An export runs as long as its parts take (hours for a large account): arq's timeout is only
# a backstop, and its try count is no limit either (a published part restarts the row's
# attempts, which decide; the sweep takes back what arq gives up on).
QUEUE = Queueing("export", max_tries=1000, timeout=24 * 3600)

EXPORT_JOB_NAME = QUEUE.function
export_job_id = QUEUE.job_id
enqueue_export = QUEUE.enqueue

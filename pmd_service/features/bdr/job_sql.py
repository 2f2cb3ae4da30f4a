"""A BDR's table as its job uses it: its queue, a run's guarded writes, the cleanup's statements."""

from __future__ import annotations

from ...core.named_sql import Named
from ...jobs.queueing import CLAIMABLE, MAX_ATTEMPTS, OWNED, Queueing

TABLE = "batch_download_requests"

# The row counts attempts (a sweep-enqueued run is a new arq job); arq's limit is the same.
QUEUE = Queueing("bdr", max_tries=MAX_ATTEMPTS, timeout=1800)

JOB_NAME = QUEUE.function
job_id = QUEUE.job_id
enqueue_bdr = QUEUE.enqueue

# It leaves `announced` alone: a request may be claimed while its first event is held.
SQL_CLAIM = Named(f"""
UPDATE batch_download_requests
SET status = 'processing', claim_token = :token, heartbeat_at = now(), retry_at = NULL,
    attempts = attempts + 1, started_at = coalesce(started_at, now()),
    progress_done = 0, skipped = '[]'::jsonb
WHERE id = :id AND {CLAIMABLE}
RETURNING user_id, post_ids, include_comments, include_reactions, send_email, attempts,
          artwork_count, request_id, include_layers
""")
SQL_PROGRESS = Named(f"""
UPDATE batch_download_requests SET progress_done = :done, heartbeat_at = now()
WHERE {OWNED}
RETURNING 1
""")
SQL_READY = Named(f"""
UPDATE batch_download_requests
SET status = 'ready', file_path = :path, file_size_bytes = :size, file_sha256 = :sha256,
    skipped = :skipped, progress_done = artwork_count, completed_at = now(),
    expires_at = now() + make_interval(days => :days),
    claim_token = NULL, heartbeat_at = NULL, error_message = NULL, error_code = NULL
WHERE {OWNED}
""")
SQL_FAILED = Named(f"""
UPDATE batch_download_requests
SET status = 'failed', error_message = left(:message, 500), skipped = :skipped,
    error_code = :code, completed_at = now(),
    claim_token = NULL, heartbeat_at = NULL, retry_at = NULL
WHERE {OWNED}
RETURNING 1
""")
# For the sweep: a server that stopped between committing a request and announcing it.
SQL_ANNOUNCE_LEFT = Named("""
UPDATE batch_download_requests SET announced = true
WHERE NOT announced AND created_at < now() - make_interval(secs => :grace)
""")

# For the daily cleanup: the plan selects rows, the run re-checks them, as of the plan's `:clock`.
_DUE = "status = 'ready' AND expires_at <= :clock::timestamptz"
_TERMINAL = "status IN ('failed', 'expired', 'cancelled')"
# Finished requests past the retention (`:days`), and those of users the host deleted.
_PURGE = """(coalesce(completed_at, created_at) < :clock::timestamptz - make_interval(days => :days)
    OR NOT EXISTS (SELECT 1 FROM users u WHERE u.id = b.user_id))"""
SQL_PLAN_EXPIRE = Named(f"SELECT id, ARRAY[file_path] AS files FROM {TABLE} WHERE {_DUE}")
# A request the plan expires (`:ids`) counts as expired, as in the run.
SQL_PLAN_PURGE = Named(f"""
SELECT id FROM batch_download_requests b
WHERE ({_TERMINAL} OR {_DUE} AND id = ANY(:ids::uuid[])) AND {_PURGE}
""")
SQL_EXPIRE = Named(f"""
UPDATE batch_download_requests SET status = 'expired'
WHERE id = ANY(:ids::uuid[]) AND {_DUE}
RETURNING id, ARRAY[file_path] AS files
""")
SQL_PURGE = Named(f"""
DELETE FROM batch_download_requests b
WHERE id = ANY(:ids::uuid[]) AND {_TERMINAL} AND {_PURGE}
RETURNING id
""")
# The cleanup's statements in the order jobs/kind.py's Expiring takes them.
EXPIRY = (SQL_PLAN_EXPIRE, SQL_PLAN_PURGE, SQL_EXPIRE, SQL_PURGE)

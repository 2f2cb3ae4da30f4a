"""An export's tables as its job uses them: queue, a run's guarded writes, cleanup statements."""

from __future__ import annotations

from ...core.named_sql import Named
from ...jobs.queueing import CLAIMABLE, OWNED, Queueing, lock_owned
from .incremental import followable

TABLE = "exports"

# An export runs for hours: arq's timeout and tries are backstops, the row's attempts decide.
QUEUE = Queueing("export", max_tries=1000, timeout=24 * 3600)

enqueue_export = QUEUE.enqueue

# Whether export `e` counts for the cooldown: not failed, cancelled early or an operator's.
COUNTS_FOR_COOLDOWN = """(
    e.status <> 'failed' AND e.error_message IS NULL AND NOT e.by_operator
    AND (e.status <> 'cancelled' OR EXISTS (
        SELECT 1 FROM export_parts p WHERE p.export_id = e.id AND p.completed_at IS NOT NULL))
)"""

SQL_CLAIM = Named(f"""
UPDATE exports
SET status = 'processing', claim_token = :token, heartbeat_at = now(), retry_at = NULL,
    attempts = attempts + 1, started_at = coalesce(started_at, now())
WHERE id = :id AND {CLAIMABLE}
RETURNING user_id, user_sqid, part_bytes, include_comments, include_reactions, send_email,
          attempts, request_id, include_upscaled, follows_id, follows_started_at, base_post_ids,
          layout
""")
SQL_PARTS = Named("""
SELECT number, status, post_ids, artwork_count, skipped, file_size_bytes
FROM export_parts WHERE export_id = :id ORDER BY number
""")
SQL_LOCK_OWNED = lock_owned(TABLE)
SQL_ADD_PART = """
INSERT INTO export_parts (export_id, number, post_ids, artwork_count, estimated_bytes)
VALUES ($1, $2, $3, cardinality($3::int[]), $4)
"""
SQL_PLANNED = Named("""
UPDATE exports SET artwork_count = :count, progress_done = 0, parts_version = parts_version + 1,
    covered_post_ids = :covered, removed = :removed
WHERE id = :id
""")
SQL_REMOVED_LIST = Named("SELECT removed FROM exports WHERE id = :id")

SQL_PART_STARTED = Named("""
UPDATE export_parts SET status = 'processing' WHERE export_id = :id AND number = :number
  AND status IN ('pending', 'processing')
""")
SQL_TOUCH = "UPDATE exports SET parts_version = parts_version + 1 WHERE id = $1"
SQL_PROGRESS = Named(f"""
UPDATE exports SET progress_done = :done, heartbeat_at = now()
WHERE {OWNED}
RETURNING 1
""")
SQL_PART_READY = Named("""
UPDATE export_parts
SET status = 'ready', file_path = :path, file_size_bytes = :size, sha256 = :sha256,
    artwork_count = :added, skipped = :skipped, completed_at = now()
WHERE export_id = :id AND number = :number
""")
# A published part is progress: the run's attempts start again.
SQL_AFTER_PART = Named("""
UPDATE exports
SET progress_done = :done, total_bytes = total_bytes + :size, skipped = skipped || :skipped::jsonb,
    parts_version = parts_version + 1, attempts = 1, heartbeat_at = now()
WHERE id = :id AND claim_token = :token
""")
# The posts it holds, for the next incremental export, and `ready_at`, which makes it followable;
# an entry naming a `file` (a palette) left out only that file, so its post stays covered.
SQL_READY = Named(f"""
UPDATE exports
SET status = 'ready', completed_at = now(), expires_at = now() + make_interval(days => :days),
    ready_at = now(),
    claim_token = NULL, heartbeat_at = NULL, error_message = NULL, error_code = NULL,
    progress_done = artwork_count,
    covered_post_ids = ARRAY(
        SELECT c FROM unnest(covered_post_ids) AS c
        WHERE NOT EXISTS (
            SELECT 1 FROM jsonb_array_elements(skipped) AS s
            WHERE (s->>'post_id')::int = c AND s->'file' IS NULL))
WHERE {OWNED}
RETURNING 1
""")
# The parts already built stay downloadable until the export expires.
SQL_FAILED = Named(f"""
WITH ended AS (
    UPDATE export_parts SET status = 'failed'
    WHERE export_id = :id AND status IN ('pending', 'processing')
      AND EXISTS (SELECT 1 FROM exports WHERE id = :id AND claim_token = :token)
)
UPDATE exports
SET status = 'failed', error_message = left(:message, 500), error_code = :code,
    completed_at = now(), expires_at = CASE WHEN EXISTS (
        SELECT 1 FROM export_parts WHERE export_id = :id AND status = 'ready')
        THEN now() + make_interval(days => :days) END,
    claim_token = NULL, heartbeat_at = NULL, retry_at = NULL, parts_version = parts_version + 1
WHERE {OWNED}
RETURNING 1
""")

# For the daily cleanup: the plan selects rows, the run re-checks them, as of the plan's `:clock`.
_DUE = "e.status IN ('ready', 'failed') AND e.expires_at <= :clock::timestamptz"
_TERMINAL = "e.status IN ('failed', 'expired', 'cancelled')"
# Past the retention (`:days`), but not in its `:cooldown` (seconds) nor the newest followable.
_PURGE = f"""(e.expires_at IS NULL OR e.expires_at <= :clock::timestamptz)
  AND coalesce(e.completed_at, e.created_at) < :clock::timestamptz - make_interval(days => :days)
  AND NOT ({COUNTS_FOR_COOLDOWN} AND e.created_at > :clock::timestamptz - make_interval(secs => :cooldown))
  AND NOT ({followable("e")} AND NOT EXISTS (
        SELECT 1 FROM exports n WHERE n.user_id = e.user_id AND {followable("n")}
          AND n.by_operator = e.by_operator AND (n.created_at, n.id) > (e.created_at, e.id)))"""
SQL_PLAN_EXPIRE = Named(f"""
SELECT e.id, coalesce(array_agg(p.file_path ORDER BY p.number)
                      FILTER (WHERE p.status = 'ready'), '{{}}') AS files
FROM exports e LEFT JOIN export_parts p ON p.export_id = e.id
WHERE {_DUE} GROUP BY e.id
""")
# An export the plan expires (`:ids`) counts as expired, as in the run.
SQL_PLAN_PURGE = Named(f"""
SELECT id FROM exports e
WHERE ({_TERMINAL} OR {_DUE} AND e.id = ANY(:ids::uuid[])) AND {_PURGE}
""")
SQL_EXPIRE = Named(f"""
WITH due AS (
    UPDATE exports e SET status = 'expired', parts_version = parts_version + 1
    WHERE e.id = ANY(:ids::uuid[]) AND {_DUE}
    RETURNING id
), parts AS (
    UPDATE export_parts p SET status = 'expired'
    FROM due WHERE p.export_id = due.id AND p.status = 'ready'
    RETURNING p.export_id, p.number, p.file_path
)
SELECT due.id, coalesce(array_agg(parts.file_path ORDER BY parts.number)
                        FILTER (WHERE parts.export_id IS NOT NULL), '{{}}') AS files
FROM due LEFT JOIN parts ON parts.export_id = due.id GROUP BY due.id
""")
SQL_PURGE = Named(f"""
DELETE FROM exports e
WHERE e.id = ANY(:ids::uuid[]) AND {_TERMINAL} AND {_PURGE}
RETURNING id
""")
# The cleanup's statements in the order jobs/kind.py's Expiring takes them.
EXPIRY = (SQL_PLAN_EXPIRE, SQL_PLAN_PURGE, SQL_EXPIRE, SQL_PURGE)

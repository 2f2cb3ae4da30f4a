"""What a restore may leave inconsistent in exports (jobs/restore.py): a part that says ready for
a file removed since the backup, an export queued only in the Redis that was lost, a recurring
export whose next run passed while the backup waited, an email owed that may have gone out
after the backup was taken."""

from __future__ import annotations

from ..jobs.restore import Look, RestoreCheck
from ..mail.notify import MAX_EMAIL_ATTEMPTS, OWED_ROW

_OWNER = "coalesce(e.user_sqid, '#' || e.user_id) AS user_sqid"

SQL_CHECK_READY_PARTS = f"""
SELECT e.id, p.number, {_OWNER}, p.file_path, p.file_size_bytes
FROM export_parts p JOIN exports e ON e.id = p.export_id
WHERE p.status = 'ready' ORDER BY e.created_at, e.id, p.number
"""

SQL_CHECK_RUNNING = f"""
SELECT e.id, {_OWNER}, e.status FROM exports e
WHERE e.status IN ('pending', 'processing') ORDER BY e.created_at, e.id
"""

SQL_CHECK_SCHEDULES_DUE = """
SELECT s.user_id AS id, coalesce(s.user_sqid, '#' || s.user_id) AS user_sqid,
       s.next_at, s.every_days,
       1 + floor(extract(epoch FROM now() - s.next_at) / (s.every_days * 86400))::int
         AS runs
FROM export_schedules s
WHERE s.cancelled_at IS NULL AND s.remaining > 0 AND s.next_at <= now()
ORDER BY s.next_at, s.user_id
"""

SQL_CHECK_EMAIL_OWED = f"""
SELECT e.id, {_OWNER}, e.status FROM exports e
WHERE {OWED_ROW} ORDER BY e.completed_at, e.id
"""

RESTORE_CHECKS: tuple[RestoreCheck, ...] = (
    RestoreCheck(
        "export-part-file-gone",
        SQL_CHECK_READY_PARTS,
        Look.FILE,
        "part {number} of export {id} of user {user_sqid} is ready",
        "its download answers 410 and marks the part expired",
    ),
    RestoreCheck(
        "export-not-queued",
        SQL_CHECK_RUNNING,
        Look.JOB,
        "export {id} of user {user_sqid} is {status}",
        "the sweep queues it again (a pending one once JOB_PENDING_GRACE_SECONDS old, a "
        "processing one once its heartbeat is JOB_STALE_SECONDS old), keeping its ready parts",
    ),
    RestoreCheck(
        "export-schedule-due",
        SQL_CHECK_SCHEDULES_DUE,
        Look.ROWS,
        "the recurring export of user {user_sqid} (every {every_days} days) was due at "
        "{next_at}: {runs} run(s) missed",
        "the sweep starts one export, not one a run missed, and moves the next run ahead",
    ),
    RestoreCheck(
        "export-email-owed",
        SQL_CHECK_EMAIL_OWED,
        Look.ROWS,
        "export {id} of user {user_sqid} is {status} and its email is owed",
        "the sweep sends it; one that went out after the backup was taken goes out again",
        (MAX_EMAIL_ATTEMPTS,),
    ),
)

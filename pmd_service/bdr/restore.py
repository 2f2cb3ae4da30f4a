"""What a restore may leave inconsistent in download requests (jobs/restore.py): a row that says
ready for a ZIP removed since the backup, a request queued only in the Redis that was lost, an
email owed that may have gone out after the backup was taken."""

from __future__ import annotations

from ..jobs.restore import Look, RestoreCheck
from ..mail.notify import MAX_EMAIL_ATTEMPTS, OWED_ROW

_OWNER = "coalesce(u.public_sqid, '#' || b.user_id) AS user_sqid"
_FROM = "FROM batch_download_requests b LEFT JOIN users u ON u.id = b.user_id"

SQL_CHECK_READY = f"""
SELECT b.id, {_OWNER}, b.file_path, b.file_size_bytes {_FROM}
WHERE b.status = 'ready' ORDER BY b.created_at, b.id
"""

SQL_CHECK_RUNNING = f"""
SELECT b.id, {_OWNER}, b.status {_FROM}
WHERE b.status IN ('pending', 'processing') ORDER BY b.created_at, b.id
"""

SQL_CHECK_EMAIL_OWED = f"""
SELECT b.id, {_OWNER}, b.status {_FROM}
WHERE {OWED_ROW} ORDER BY b.completed_at, b.id
"""

RESTORE_CHECKS: tuple[RestoreCheck, ...] = (
    RestoreCheck(
        "bdr-file-gone",
        SQL_CHECK_READY,
        Look.FILE,
        "BDR {id} of user {user_sqid} is ready",
        "its download answers 410 and marks it expired",
    ),
    RestoreCheck(
        "bdr-not-queued",
        SQL_CHECK_RUNNING,
        Look.JOB,
        "BDR {id} of user {user_sqid} is {status}",
        "the sweep queues it again (a pending one once JOB_PENDING_GRACE_SECONDS old, a "
        "processing one once its heartbeat is JOB_STALE_SECONDS old) and a worker builds it",
    ),
    RestoreCheck(
        "bdr-email-owed",
        SQL_CHECK_EMAIL_OWED,
        Look.ROWS,
        "BDR {id} of user {user_sqid} is {status} and its email is owed",
        "the sweep sends it; one that went out after the backup was taken goes out again",
        (MAX_EMAIL_ATTEMPTS,),
    ),
)

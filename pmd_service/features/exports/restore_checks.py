"""The exports' `check-restore` findings: a file gone, unqueued, a schedule overdue, an email owed."""

from __future__ import annotations

from ...jobs.restore import Look, RestoreCheck, email_owed, not_queued

_OWNER = "coalesce(t.user_sqid, '#' || t.user_id) AS user_sqid"
_ROWS = f"SELECT t.id, {_OWNER}, t.status FROM exports t"
_IS = "export {id} of user {user_sqid} is {status}"

SQL_CHECK_READY_PARTS = f"""
SELECT t.id, p.number, {_OWNER}, p.file_path, p.file_size_bytes
FROM export_parts p JOIN exports t ON t.id = p.export_id
WHERE p.status = 'ready' ORDER BY t.created_at, t.id, p.number
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

RESTORE_CHECKS: tuple[RestoreCheck, ...] = (
    RestoreCheck(
        "export-part-file-gone",
        SQL_CHECK_READY_PARTS,
        Look.FILE,
        "part {number} of export {id} of user {user_sqid} is ready",
        "its download answers 410 and marks the part expired",
    ),
    not_queued("export-not-queued", _ROWS, _IS, ", keeping its ready parts"),
    RestoreCheck(
        "export-schedule-due",
        SQL_CHECK_SCHEDULES_DUE,
        Look.ROWS,
        "the recurring export of user {user_sqid} (every {every_days} days) was due at "
        "{next_at}: {runs} run(s) missed",
        "the sweep starts one export, not one a run missed, and moves the next run ahead",
    ),
    email_owed("export-email-owed", _ROWS, _IS),
)

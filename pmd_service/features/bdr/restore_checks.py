"""The BDRs' `check-restore` findings: a ZIP gone, a request unqueued, an email owed."""

from __future__ import annotations

from ...jobs.restore import Look, RestoreCheck, email_owed, not_queued

_OWNER = "coalesce(u.public_sqid, '#' || t.user_id) AS user_sqid"
_FROM = "FROM batch_download_requests t LEFT JOIN users u ON u.id = t.user_id"
_ROWS = f"SELECT t.id, {_OWNER}, t.status {_FROM}"
_IS = "BDR {id} of user {user_sqid} is {status}"

SQL_CHECK_READY = f"""
SELECT t.id, {_OWNER}, t.file_path, t.file_size_bytes {_FROM}
WHERE t.status = 'ready' ORDER BY t.created_at, t.id
"""

RESTORE_CHECKS: tuple[RestoreCheck, ...] = (
    RestoreCheck(
        "bdr-file-gone",
        SQL_CHECK_READY,
        Look.FILE,
        "BDR {id} of user {user_sqid} is ready",
        "its download answers 410 and marks it expired",
    ),
    not_queued("bdr-not-queued", _ROWS, _IS, " and a worker builds it"),
    email_owed("bdr-email-owed", _ROWS, _IS),
)

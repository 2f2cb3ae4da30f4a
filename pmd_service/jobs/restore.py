"""What a restore may leave inconsistent, as each job kind states it for its own rows
(features/bdr/job_sql.py, features/exports/job_sql.py): the database, its files and its queue are kept in three
places, backed up (or not) at different moments. `python -m pmd_service check-restore`
(upkeep/restore_check.py) runs every kind's checks and reports what it finds, changing nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..mail.notify import MAX_EMAIL_ATTEMPTS


class Look(enum.Enum):
    """What makes a row of a check's query a finding."""

    ROWS = "rows"  # every row is one
    FILE = "file"  # its `file_path` is missing, or is not `file_size_bytes` long
    JOB = "job"  # no job of its kind for its `id` is queued or running


@dataclass(frozen=True)
class RestoreCheck:
    """One kind of inconsistency. `sql` reads rows (in one read-only snapshot with the other
    checks), each with the columns `says` names; `says` is the finding's sentence (for FILE and
    JOB, the state the row claims: the command says what contradicts it); `repair` says what
    the service does about it by itself, and when."""

    name: str  # stable: the finding's name on its line and in --json
    sql: str
    look: Look
    says: str  # str.format with the row's columns
    repair: str
    args: tuple[object, ...] = ()  # the query's $1, $2, …


def not_queued(name: str, sql: str, says: str, then: str) -> RestoreCheck:
    """A kind's rows pending or processing (`sql`: their `id`, `user_sqid` and `status`), which
    a lost Redis may not hold a job of; `then` ends the repair (what a worker does with one)."""
    return RestoreCheck(
        name,
        sql,
        Look.JOB,
        says,
        "the sweep queues it again (a pending one once JOB_PENDING_GRACE_SECONDS old, a "
        f"processing one once its heartbeat is JOB_STALE_SECONDS old){then}",
    )


def email_owed(name: str, sql: str, says: str) -> RestoreCheck:
    """A kind's rows whose email is owed (`sql`: as mail/notify.py's OWED_ROW says, fewer than
    $1 tries made): one a backup taken before it went out still owes is sent again."""
    return RestoreCheck(
        name,
        sql,
        Look.ROWS,
        f"{says} and its email is owed",
        "the sweep sends it; one that went out after the backup was taken goes out again",
        (MAX_EMAIL_ATTEMPTS,),
    )

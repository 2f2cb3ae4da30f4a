"""What a restore may leave inconsistent between a job kind's rows, files and queue, as each kind
states it for `python -m pmd_service check-restore` (upkeep/restore_check.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..core.named_sql import Named
from ..mail.notify import OWED_ROW, TRIES


class Look(enum.Enum):
    """What makes a row of a check's query a finding."""

    ROWS = "rows"  # every row is one
    FILE = "file"  # its `file_path` is missing, or is not `file_size_bytes` long
    JOB = "job"  # no job of its kind for its `id` is queued or running


@dataclass(frozen=True)
class RestoreCheck:
    """One kind of inconsistency: rows of `sql`, each a finding `says` describes."""

    name: str  # stable: the finding's name on its line and in --json
    sql: str
    look: Look
    says: str  # str.format with the row's columns
    repair: str
    args: tuple[object, ...] = ()  # the query's $1, $2, …


def not_queued(name: str, rows: str, says: str, then: str) -> RestoreCheck:
    """A kind's rows (`rows`: `SELECT … FROM <table> t`) pending or processing, which a lost
    Redis may not hold a job of."""
    return RestoreCheck(
        name,
        f"{rows} WHERE t.status IN ('pending', 'processing') ORDER BY t.created_at, t.id",
        Look.JOB,
        says,
        "the sweep queues it again (a pending one once JOB_PENDING_GRACE_SECONDS old, a "
        f"processing one once its heartbeat is JOB_STALE_SECONDS old){then}",
    )


def email_owed(name: str, rows: str, says: str) -> RestoreCheck:
    """A kind's rows (as `not_queued` takes them) whose email is owed after fewer than `TRIES`."""
    text, *args = Named(f"{rows} WHERE {OWED_ROW} ORDER BY t.completed_at, t.id").bind(TRIES)
    return RestoreCheck(
        name,
        text,
        Look.ROWS,
        f"{says} and its email is owed",
        "the sweep sends it; one that went out after the backup was taken goes out again",
        tuple(args),
    )

"""Rules that more than one part of the service applies, each stated once.

The SQL fragments are constants, never built from input. The page states the restore window
once for the browser (`web/static/format.js`, RESTORE_WINDOW_DAYS); a test holds the two equal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import IntEnum

# A post deleted by its owner can be restored (and is listed under "Recently deleted") this long.
RESTORE_WINDOW_DAYS = 7


def restorable(alias: str) -> str:
    """SQL: the post `alias` was deleted recently enough to be restored."""
    return (
        f"{alias}.deleted_by_user"
        f" AND {alias}.deleted_by_user_date > now() - interval '{RESTORE_WINDOW_DAYS} days'"
    )


def visible_comment(alias: str) -> str:
    """SQL: the comment `alias` is shown to people (not hidden by a moderator, not deleted)."""
    return (
        f"NOT {alias}.hidden_by_mod AND NOT {alias}.deleted_by_owner AND NOT {alias}.deleted_by_mod"
    )


# Daily limits count from the start of the current UTC day. SQL and Python, the same boundary.
UTC_DAY_START = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def seconds_to_next_utc_day(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds() + 0.999))


# The download requests a list shows and a stream's snapshot holds: the newest this many.
NEWEST_BDRS = 20


class AdvisoryLock(IntEnum):
    """PostgreSQL advisory lock keys of this service, in one place so no two collide."""

    MIGRATIONS = 0x504D445F4D4947  # "PMD_MIG": one migrator at a time, session lock
    BDR_QUOTA = 5064069  # with the requester's id as second key: one quota check at a time
    EXPORT_START = 5064070  # with the user's id: one export request of a user at a time

"""The bounds that download requests and exports share: the UTC day their daily limits count
from (in SQL and in Python, the same boundary) and how many of them a list shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Daily limits count from the start of the current UTC day. SQL and Python, the same boundary.
UTC_DAY_START = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def seconds_to_next_utc_day(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds() + 0.999))


# The download requests (or exports) a list shows and a stream's snapshot holds: the newest
# this many.
NEWEST_ITEMS = 20

"""The bounds that download requests and exports share: the UTC day their daily limits count
from (in SQL and in Python, the same boundary) and how many of them a list shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

UTC_DAY_START = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def seconds_to_next_utc_day(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds() + 0.999))


# The newest download requests (or exports) a list shows and a stream's snapshot holds.
NEWEST_ITEMS = 20

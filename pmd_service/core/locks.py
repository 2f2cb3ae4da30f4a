"""PostgreSQL advisory lock keys of this service, in one place so no two collide."""

from __future__ import annotations

from enum import IntEnum


class AdvisoryLock(IntEnum):
    MIGRATIONS = 0x504D445F4D4947  # "PMD_MIG": one migrator at a time, session lock
    # Held by every event-writing transaction to commit, so events' ids appear in commit order.
    EVENT_ORDER = 5064068
    BDR_QUOTA = 5064069  # with the requester's id as second key: one quota check at a time
    EXPORT_START = 5064070  # with the user's id: one export request of a user at a time
    # With the owner's (or moderator's) id: one write against a budget at a time (posts/pace.py).
    WRITE_BUDGET = 5064071
    WRITE_BUDGET_MODERATOR = 5064072
    WRITE_BUDGET_SITE = 5064073  # every owner's writes together (features/posts/pace.py)
    CLEANUP_POLICIES = 5064074  # with the owner's id: one policy saved at a time (a cap of 10)


# A transaction's lock on a key and a second one (a user's id, or 0), released at its end.
SQL_XACT_LOCK = "SELECT pg_advisory_xact_lock($1, $2)"
# The same on each of the keys $2 (an int[]) with the key $1, in the order given.
SQL_XACT_LOCKS = "SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int[]) AS k"

"""How fast one person may write: bulk actions (undos included) a minute, and posts changed a
minute and an hour, both over sliding windows. A moderator's writes are charged to the
moderator's budget alone, an owner's own writes to the owner's: what an artist spends on their
posts never delays moderation of them.

The requests are counted in the queue's Redis, so every server process counts the same ones;
the changed posts in the database, in the transaction that changes them, so a write past the
budget is refused before any row changes (its WAL is what the budget bounds)."""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..core.codes import Code
from ..core.locks import AdvisoryLock
from ..core.problems import ProblemError

if TYPE_CHECKING:
    from ..core.db import Conn

log = logging.getLogger(__name__)

_WINDOW_SECONDS = 60

# A sliding log: one member per action accepted within the window. A refused request is not
# logged, so a client that keeps asking is let in as soon as the oldest action leaves the
# window. Returns {1, 0} (taken) or {0, ms until a turn frees up}.
_TAKE_TURN = """
local now, window, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= most then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
"""


def _now() -> float:
    # One clock for the pacing (tests move it).
    return time.time()


async def take_turn(redis: Redis, user_id: int, per_minute: int) -> None:
    """Count one action of `user_id`, or 429 with Retry-After past `per_minute` in the last 60
    seconds; an unreachable Redis lets the action through (the database bounds what it keeps)."""
    now_ms = int(_now() * 1000)
    key = f"pmd:pace:actions:{user_id}"
    try:
        taken, wait_ms = await redis.eval(  # type: ignore[misc]
            _TAKE_TURN,
            1,
            key,
            str(now_ms),
            str(_WINDOW_SECONDS * 1000),
            str(per_minute),
            uuid.uuid4().hex,
        )
    except (RedisError, OSError) as exc:
        log.warning("could not count a bulk action against the pace limit (%s): let through", exc)
        return
    if not taken:
        wait = max(1, math.ceil(int(wait_ms) / 1000))
        raise ProblemError(
            429,
            "too-many-actions",
            "Too Many Requests",
            f"At most {per_minute} bulk actions a minute; wait {wait} s and send it again "
            "(to change many posts at once, act by filter).",
            headers={"Retry-After": str(wait)},
            extra={"retry_after_seconds": wait},
            code=Code.RATE_LIMITED,
            details={"limit": per_minute, "window_seconds": _WINDOW_SECONDS},
        )


# --- the budget of changed posts ---------------------------------------------------------------

# One lock per budget, taken before any post is locked, so two writes against one budget never
# both read it as unspent.
SQL_BUDGET_LOCK = "SELECT pg_advisory_xact_lock($1, $2)"
# Posts changed within each window, the current clock's ($1 user, $2 whose budget, $3 and $4
# the windows' seconds). clock_timestamp, not now(): the transaction may have waited for the
# lock. A spend older than the longest window is no one's: deleted here, by its subject.
SQL_BUDGET_USED = """
WITH purged AS (
    DELETE FROM write_spends
    WHERE user_id = $1 AND as_moderator = $2
      AND spent_at <= clock_timestamp() - make_interval(secs => greatest($3::float8, $4::float8))
    RETURNING 1
)
SELECT coalesce(sum(posts) FILTER (
           WHERE spent_at > clock_timestamp() - make_interval(secs => $3::float8)), 0) AS short,
       coalesce(sum(posts) FILTER (
           WHERE spent_at > clock_timestamp() - make_interval(secs => $4::float8)), 0) AS long,
       (SELECT count(*) FROM purged) AS purged
FROM write_spends WHERE user_id = $1 AND as_moderator = $2
"""
# A refused write's wait: the spends of the window, oldest first, with the seconds until each
# leaves it ($1 user, $2 whose budget, $3 the window's seconds).
SQL_BUDGET_SPENDS = """
SELECT posts, extract(epoch FROM spent_at + make_interval(secs => $3::float8)
                                - clock_timestamp())::float8 AS leaves_in
FROM write_spends
WHERE user_id = $1 AND as_moderator = $2
  AND spent_at > clock_timestamp() - make_interval(secs => $3::float8)
ORDER BY spent_at
"""
SQL_BUDGET_SPEND = "INSERT INTO write_spends (user_id, as_moderator, posts) VALUES ($1, $2, $3)"


@dataclass(frozen=True, slots=True)
class Budget:
    """The posts one owner's own writes, and one moderator's, may change a minute and an hour
    (BULK_CHANGED_POSTS_PER_MINUTE, BULK_CHANGED_POSTS_PER_HOUR)."""

    per_minute: int
    per_hour: int

    def windows(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return (60, self.per_minute), (3600, self.per_hour)


@dataclass(frozen=True, slots=True)
class _Used:
    user_id: int
    as_moderator: bool
    window_seconds: int
    limit: int
    used: int

    @property
    def left(self) -> int:
        # Nothing spent: any one action passes (settings keep actions within the budgets; an
        # undo of one recorded under larger budgets must not be refused forever).
        return self.limit - self.used if self.used else 2**31 - 1


@dataclass(frozen=True, slots=True)
class Room:
    """The budgets a write is held to, locked for its transaction: `left` posts may change."""

    conn: Conn
    budgets: tuple[_Used, ...]
    subject: tuple[int, bool]  # whose budget the write is charged to: (user, as moderator)

    @property
    def left(self) -> int:
        return min(b.left for b in self.budgets)

    async def spend(self, changed: int) -> None:
        """Count `changed` posts against the write's budget; a write that changed nothing costs
        nothing."""
        if changed:
            await self.conn.execute(SQL_BUDGET_SPEND, *self.subject, changed)

    async def refusal(self, requested: int) -> ProblemError:
        """429 for a write of `requested` posts past a budget, with the wait until the budget
        that frees up last has room for it."""
        worst: tuple[float, _Used] | None = None
        for b in self.budgets:
            if requested <= b.left:
                continue
            need = b.used + requested - b.limit
            wait = float(b.window_seconds)
            for spend in await self.conn.fetch(
                SQL_BUDGET_SPENDS, b.user_id, b.as_moderator, float(b.window_seconds)
            ):
                need -= spend["posts"]
                if need <= 0:
                    wait = spend["leaves_in"]
                    break
            if worst is None or wait > worst[0]:
                worst = (wait, b)
        assert worst is not None  # the write was refused: some budget is short
        seconds, b = max(1, math.ceil(worst[0])), worst[1]
        whose = "this moderator's actions" if b.as_moderator else "this account's posts"
        span = "minute" if b.window_seconds == 60 else "hour"
        return ProblemError(
            429,
            "row-budget-exceeded",
            "Too Many Requests",
            f"This action would change {requested} posts, and {b.used} of {whose} were changed "
            f"in the last {span}, where the most is {b.limit}; nothing was changed. Wait "
            f"{seconds} s and send it again, or act on fewer posts.",
            code=Code.ROW_BUDGET_EXCEEDED,
            headers={"Retry-After": str(seconds)},
            details={
                "limit": b.limit,
                "window_seconds": b.window_seconds,
                "used": b.used,
                "requested": requested,
                "retry_after_seconds": seconds,
                "scope": "moderator" if b.as_moderator else "owner",
            },
        )


async def hold_budget(conn: Conn, budget: Budget, owner_id: int, moderator_id: int | None) -> Room:
    """Lock the budget this write is charged to (the acting moderator's, else the owner's) for
    its transaction and read what is left of it: to be called in the write's transaction,
    before it locks any post."""
    if moderator_id is not None:
        user_id, as_moderator, lock = moderator_id, True, AdvisoryLock.WRITE_BUDGET_MODERATOR
    else:
        user_id, as_moderator, lock = owner_id, False, AdvisoryLock.WRITE_BUDGET
    await conn.execute(SQL_BUDGET_LOCK, lock, user_id)
    (short, short_limit), (long, long_limit) = budget.windows()
    # A statement after the lock: its snapshot holds every spend committed before it.
    row = await conn.fetchrow(SQL_BUDGET_USED, user_id, as_moderator, float(short), float(long))
    assert row is not None  # an aggregate always has its row
    used = (
        _Used(user_id, as_moderator, short, short_limit, row["short"]),
        _Used(user_id, as_moderator, long, long_limit, row["long"]),
    )
    return Room(conn, used, (user_id, as_moderator))

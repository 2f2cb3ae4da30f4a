"""How fast one person may write: bulk actions a minute, and posts changed a minute and an hour."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ...core.codes import Code
from ...core.locks import SQL_XACT_LOCK, SQL_XACT_LOCKS, AdvisoryLock
from ...core.named_sql import Named
from ...core.problems import ProblemError
from ...core.settings import Settings
from ...host.eligibility import MAX_BATCH

if TYPE_CHECKING:
    import asyncpg

    from ...core.db import Conn

log = logging.getLogger(__name__)

_WINDOW_SECONDS = 60
_HOUR_SECONDS = 3600

# A sliding log of accepted actions; returns {1, 0} (taken) or {0, ms until a turn frees up}.
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
    """Count one action of `user_id`, or 429 past `per_minute`; an unreachable Redis lets it by."""
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


def _since(seconds: str) -> str:
    """SQL: the start of a window the parameter `seconds` long; evaluated once as a subquery,
    so that it can bound an index scan; clock_timestamp(): the lock may have waited."""
    return f"(SELECT clock_timestamp() - make_interval(secs => :{seconds}::float8))"


def _site_sum(background: bool) -> str:
    """SQL: the posts owners' writes changed in the site's minute, or the policies' runs'."""
    only = "background AND " if background else ""
    return (
        f"(SELECT coalesce(sum(posts), 0) FROM site_spends WHERE {only}second > {_since('short')})"
    )


def _leaves_in(at: str) -> str:
    """SQL: the seconds until a spend made at `at` leaves the window."""
    return f"""extract(epoch FROM {at} + make_interval(secs => :window::float8)
                     - clock_timestamp())::float8 AS leaves_in"""


# In one statement after the people's locks: each one's posts changed within each window, the
# site's within the first when `site`, the background share's when `background`.
SQL_BUDGET_USED = Named(f"""
WITH purged AS (
    DELETE FROM write_spends
    WHERE user_id = ANY(:users::int[]) AND as_moderator = :as_moderator
      AND spent_at <= clock_timestamp() - make_interval(secs => greatest(:short::float8,
                                                                      :long::float8))
)
SELECT u.id AS user_id,
       coalesce(sum(w.posts) FILTER (
           WHERE w.spent_at > clock_timestamp() - make_interval(secs => :short::float8)), 0)
           AS short,
       coalesce(sum(w.posts) FILTER (
           WHERE w.spent_at > clock_timestamp() - make_interval(secs => :long::float8)), 0)
           AS long,
       CASE WHEN :site::bool THEN {_site_sum(False)} END AS site,
       CASE WHEN :background::bool THEN {_site_sum(True)} END AS background
FROM unnest(:users::int[]) AS u(id)
LEFT JOIN write_spends w ON w.user_id = u.id AND w.as_moderator = :as_moderator
GROUP BY u.id
""")
# A refused write's wait: the window's spends, oldest first, with the seconds until each leaves.
SQL_BUDGET_SPENDS = Named(f"""
SELECT posts, {_leaves_in("spent_at")}
FROM write_spends
WHERE user_id = :user AND as_moderator = :as_moderator
  AND spent_at > clock_timestamp() - make_interval(secs => :window::float8)
ORDER BY spent_at
""")
# Each of `users` spent the posts of `posts` at its place.
_SPEND = """INSERT INTO write_spends (user_id, as_moderator, posts, background)
    SELECT s.user_id, :as_moderator, s.posts, :background
    FROM unnest(:users::int[], :posts::int[]) AS s(user_id, posts)"""
# A moderator's spend, which the site's budget does not hold.
SQL_BUDGET_SPEND = Named(_SPEND)
# Owners' spends, in one statement after the site's lock; its purge skips rows another write
# holds (waiting on them under the site's lock could deadlock), and it reads the site's spends
# as they were before these, for the caller to refuse the write.
SQL_SITE_SPEND = Named(f"""
WITH purged AS (
    DELETE FROM write_spends WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM write_spends
        WHERE NOT as_moderator AND spent_at <= {_since("long")}
        FOR UPDATE SKIP LOCKED))
), spent AS (
    {_SPEND}
), total AS (
    SELECT sum(p)::int AS posts FROM unnest(:posts::int[]) AS p
), now_second AS (
    SELECT date_trunc('second', clock_timestamp()) AS second
), added AS (
    UPDATE site_spends s SET posts = s.posts + t.posts
    FROM now_second n, total t WHERE s.second = n.second AND s.background = :background
    RETURNING 1
), counted AS (
    INSERT INTO site_spends (second, background, posts)
    SELECT n.second, :background, t.posts FROM now_second n, total t
    WHERE NOT EXISTS (SELECT FROM added)
), swept AS (
    DELETE FROM site_spends WHERE second <= {_since("short")}
)
SELECT {_site_sum(False)} AS site,
       CASE WHEN :background::bool THEN {_site_sum(True)} END AS background
""")


def _site_spends(background: bool) -> Named:
    """The site's spends of the window (or its background share's), as SQL_BUDGET_SPENDS."""
    only = "background AND " if background else ""
    return Named(f"""
SELECT sum(posts) AS posts, {_leaves_in("second")}
FROM site_spends
WHERE {only}second > {_since("window")}
GROUP BY second
ORDER BY second
""")


SQL_SITE_SPENDS, SQL_BACKGROUND_SPENDS = _site_spends(False), _site_spends(True)
# The seconds until the oldest second of the site's minute leaves it (NULL: none spent).
SQL_SITE_ROOM_IN = Named(f"""
SELECT {_leaves_in("min(second)")} FROM site_spends WHERE second > {_since("window")}
""")


async def site_room_in(conn: asyncpg.Pool | Conn) -> float:
    """Seconds until the oldest spends of the site's minute leave it, freeing up some room."""
    seconds = await conn.fetchval(*SQL_SITE_ROOM_IN.bind({"window": float(_WINDOW_SECONDS)}))
    return max(0.0, seconds or 0.0)


@dataclass(frozen=True, slots=True)
class Budget:
    """Posts changed a minute and an hour per person, and a minute by all owners, by policies."""

    per_minute: int
    per_hour: int
    site_per_minute: int
    background_per_minute: int

    @classmethod
    def of(cls, settings: Settings) -> Budget:
        return cls(
            settings.bulk_changed_posts_per_minute,
            settings.bulk_changed_posts_per_hour,
            settings.bulk_changed_posts_site_per_minute,
            settings.bulk_changed_posts_site_background_per_minute,
        )


Scope = Literal["owner", "moderator", "site", "background"]


@dataclass(frozen=True, slots=True)
class _Used:
    scope: Scope
    user_id: int | None  # None: the site's
    window_seconds: int
    limit: int
    used: int
    # Room the budget always leaves: a person's write of one batch never waits on the site's.
    floor: int = 0

    @property
    def left(self) -> int:
        # Nothing spent: any one action passes, so an undo recorded under larger budgets does.
        return max(self.floor, self.limit - self.used) if self.used else 2**31 - 1

    def after(self, spent: int) -> _Used:
        """The budget once `spent` more posts are counted."""
        return dataclasses.replace(self, used=self.used + spent)

    async def wait(self, conn: Conn, requested: int) -> float:
        """Seconds until enough of the window's spends leave it for `requested` more posts."""
        values: dict[str, object] = {"window": float(self.window_seconds), "user": self.user_id}
        values["as_moderator"] = self.scope == "moderator"
        sql = {"site": SQL_SITE_SPENDS, "background": SQL_BACKGROUND_SPENDS}.get(self.scope)
        need = self.used + requested - self.limit
        for spend in await conn.fetch(*(sql or SQL_BUDGET_SPENDS).bind(values)):
            need -= spend["posts"]
            if need <= 0:
                return float(spend["leaves_in"])
        return float(self.window_seconds)


def _site_used(budget: Budget, site: int, background: int | None) -> tuple[_Used, ...]:
    """The site's budgets of a write, from its spends read: a person's keeps a batch's room
    whatever others spent; a policy's run (`background` read) is held to its share too."""
    minute = _WINDOW_SECONDS
    if background is None:
        return (_Used("site", None, minute, budget.site_per_minute, site, floor=MAX_BATCH),)
    return (
        _Used("site", None, minute, budget.site_per_minute, site),
        _Used("background", None, minute, budget.background_per_minute, background),
    )


@dataclass(frozen=True, slots=True)
class Room:
    """The budgets a write is held to; the site's is read now and locked at `spend`."""

    conn: Conn
    budgets: tuple[_Used, ...]
    subject: tuple[int, bool]  # whose budget the write is charged to: (user, as moderator)
    site: Budget | None  # an owner's write: the budgets, to check the site's again at `spend`
    background: bool = False  # a policy's run, not a person's write

    @property
    def left(self) -> int:
        return min(b.left for b in self.budgets)

    @property
    def held_by_site(self) -> bool:
        """Whether the site's budget leaves the write less room than the person's."""
        site = [b.left for b in self.budgets if b.user_id is None]
        own = [b.left for b in self.budgets if b.user_id is not None]
        return bool(site) and min(site) < min(own)

    async def spend(self, changed: int) -> None:
        """Count `changed` posts, or raise the refusal when the site's budget has no room."""
        if changed:
            user, as_moderator = self.subject
            await _spend(self.conn, self.site, {user: changed}, as_moderator, self.background)

    async def refusal(self, requested: int) -> ProblemError:
        """429 for `requested` posts, waiting for the budget that frees up last."""
        return await _refusal(self.conn, self.budgets, requested)


@dataclass(slots=True)
class Rooms:
    """Owners' budgets held together in one transaction (a tick's policy runs): each run has
    the room the runs before it left, and all of them are spent together at its end."""

    conn: Conn
    site: Budget
    rooms: dict[int, Room]
    spent: dict[int, int] = field(default_factory=dict)

    def room(self, owner: int) -> Room:
        """The room of `owner`'s next run."""
        room, site = self.rooms[owner], sum(self.spent.values())
        own = self.spent.get(owner, 0)
        budgets = tuple(b.after(site if b.user_id is None else own) for b in room.budgets)
        return dataclasses.replace(room, budgets=budgets)

    def take(self, owner: int, changed: int) -> None:
        self.spent[owner] = self.spent.get(owner, 0) + changed

    async def spend(self) -> None:
        """Every run's posts counted, or the refusal of the site's budget (see `Room.spend`)."""
        if any(self.spent.values()):
            await _spend(self.conn, self.site, self.spent, False, True)


async def _spend(
    conn: Conn,
    site: Budget | None,
    spends: dict[int, int],
    as_moderator: bool,
    background: bool,
) -> None:
    """Count each user's posts, or raise the refusal when the site's budget (`site`) is full."""
    values: dict[str, object] = {"as_moderator": as_moderator, "background": background}
    values |= {"users": list(spends), "posts": list(spends.values())}
    if site is None:
        await conn.execute(*SQL_BUDGET_SPEND.bind(values))
        return
    # Locked only now, so owners' writes queue for it only just before commit.
    await conn.execute(SQL_XACT_LOCK, AdvisoryLock.WRITE_BUDGET_SITE, 0)
    # A statement after the lock: its snapshot holds every spend committed before it.
    values |= {"short": float(_WINDOW_SECONDS), "long": float(_HOUR_SECONDS)}
    row = await conn.fetchrow(*SQL_SITE_SPEND.bind(values))
    assert row is not None  # a SELECT without FROM has its row
    used = _site_used(site, row["site"], row["background"])
    total = sum(spends.values())
    if any(total > b.left for b in used):
        # Its spend goes with the transaction this refusal rolls back.
        raise await _refusal(conn, used, total)


async def _refusal(conn: Conn, budgets: tuple[_Used, ...], requested: int) -> ProblemError:
    # The budget that frees up last; the write was refused, so some budget is short.
    waits = [(await b.wait(conn, requested), b) for b in budgets if requested > b.left]
    wait, b = max(waits, key=lambda w: w[0])
    seconds = max(1, math.ceil(wait))
    span = "minute" if b.window_seconds == 60 else "hour"
    if b.scope in ("site", "background"):
        slug, code = "site-budget-exceeded", Code.SITE_BUDGET_EXCEEDED
        by = " by cleanup policies" if b.scope == "background" else ""
        spent = f"{b.used} posts were changed{by} across the site"
    else:
        slug, code = "row-budget-exceeded", Code.ROW_BUDGET_EXCEEDED
        whose = "this moderator's actions" if b.scope == "moderator" else "this account's posts"
        spent = f"{b.used} of {whose} were changed"
    return ProblemError(
        429,
        slug,
        "Too Many Requests",
        f"This action would change {requested} posts, and {spent} in the last {span}, where "
        f"the most is {b.limit}; nothing was changed. Wait {seconds} s and send it again, or "
        "act on fewer posts.",
        code=code,
        headers={"Retry-After": str(seconds)},
        details={
            "limit": b.limit,
            "window_seconds": b.window_seconds,
            "used": b.used,
            "requested": requested,
            "retry_after_seconds": seconds,
            "scope": b.scope,
        },
    )


async def hold_budget(
    conn: Conn,
    budget: Budget,
    owner_id: int,
    moderator_id: int | None,
) -> Room:
    """Lock and read the write's budgets, in its transaction before it locks any post."""
    user = owner_id if moderator_id is None else moderator_id
    return (await _hold(conn, budget, [user], moderator_id is not None, False))[user]


async def hold_budgets(conn: Conn, budget: Budget, owners: Collection[int]) -> Rooms:
    """`hold_budget` for policies' runs of `owners` in one transaction (the background share)."""
    return Rooms(conn, budget, await _hold(conn, budget, owners, False, True))


async def _hold(
    conn: Conn, budget: Budget, users: Collection[int], as_moderator: bool, background: bool
) -> dict[int, Room]:
    short, long = _WINDOW_SECONDS, _HOUR_SECONDS
    scope: Scope = "moderator" if as_moderator else "owner"
    lock = AdvisoryLock.WRITE_BUDGET_MODERATOR if as_moderator else AdvisoryLock.WRITE_BUDGET
    # One lock per budget, so two writes against one budget never both read it as unspent;
    # taken in one order, so two transactions of several never wait on each other in a cycle.
    await conn.execute(SQL_XACT_LOCKS, lock, sorted(set(users)))
    # A statement after the locks: its snapshot holds every spend committed before it.
    # Moderators skip the site's budget: artists filling it must not hold moderation off.
    values: dict[str, object] = {"users": list(users), "short": float(short), "long": float(long)}
    values |= {"as_moderator": as_moderator, "site": not as_moderator, "background": background}
    rooms: dict[int, Room] = {}
    for row in await conn.fetch(*SQL_BUDGET_USED.bind(values)):
        user_id = row["user_id"]
        used = (
            _Used(scope, user_id, short, budget.per_minute, row["short"]),
            _Used(scope, user_id, long, budget.per_hour, row["long"]),
        )
        if as_moderator:
            rooms[user_id] = Room(conn, used, (user_id, True), None)
        else:
            site = _site_used(budget, row["site"], row["background"])
            rooms[user_id] = Room(conn, used + site, (user_id, False), budget, background)
    return rooms

"""A cleanup policy's run, committed whole in the transaction holding its row, and the tick."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ....core.codes import Code
from ....core.logs import REQUEST_ID
from ....core.named_sql import Named
from ....core.problems import ProblemError
from ....core.settings import Settings
from ....host.access import Principal
from ....jobs.context import state
from ....jobs.failures import TRANSIENT
from ....mail.notify import send_seconds
from ..actions import named
from ..batch_sql import action_values
from ..filters import given
from ..host_cache import FeedDrops, create_host_cache
from ..live import announce
from ..pace import Budget, hold_budget
from .mail import send_policy_hold_email, send_policy_run_email
from .service import (
    COLUMNS,
    PERIODS,
    Checked,
    LastRun,
    PolicyFields,
    PolicyItem,
    RunStatus,
    check,
    fields_of,
    get,
    missing,
    owner_only,
    paused_by_moderator,
    promotions_seen,
)
from .sql import counted, policy_run

log = logging.getLogger(__name__)

# The longest overdue policy another run does not hold, so any number of workers run each once.
SQL_TAKE_DUE = f"""
SELECT {COLUMNS} FROM cleanup_policies
WHERE enabled AND next_run_at <= now()
ORDER BY next_run_at
LIMIT 1
FOR UPDATE SKIP LOCKED
"""
SQL_TAKE_ONE = f"SELECT {COLUMNS} FROM cleanup_policies WHERE id = $1 AND owner_id = $2 FOR UPDATE"
# In one round trip: the run's own bounds ($2, $3), below the pool's command timeout so one
# slow run fails alone, and whether the owner ($1) may act at all, as every call of theirs is
# checked (host/access.py). Its statements are shaped (sql.py), so their generic plans serve.
SQL_RUN_START = """
SELECT set_config('statement_timeout', $2::text, true), set_config('lock_timeout', $3::text, true),
       u.id IS NOT NULL AS found, coalesce(u.deactivated, false) AS deactivated,
       coalesce(u.banned_until > now(), false) AS banned
FROM (SELECT 1) AS one LEFT JOIN users u ON u.id = $1
"""
# A scheduled run ($3) moves next_run_at past now by whole periods: a late policy runs once.
# A failed one ($5) backs off instead, $6 seconds doubled by each failure in a row up to its
# period, behind every policy due before it; $7, when set, records only on the very run taken
# (a failure is recorded after its rollback, when another tick may have taken it since).
SQL_RECORD = """
UPDATE cleanup_policies
SET last_run = $2::jsonb, runs = runs + 1,
    failures = CASE WHEN $5::bool THEN failures + 1
                    WHEN $2::jsonb ->> 'status' = 'failed' THEN failures ELSE 0 END,
    next_run_at = CASE
        WHEN $5::bool THEN now() + make_interval(
            secs => least($4::float8, $6::float8 * power(2, least(failures, 30))))
        WHEN $3::bool THEN next_run_at + make_interval(
            secs => $4::float8 * (floor(extract(epoch FROM now() - next_run_at) / $4::float8) + 1))
        ELSE next_run_at END
WHERE id = $1 AND ($7::timestamptz IS NULL OR next_run_at = $7::timestamptz)
"""
# The run's `posts_changed`, written last in its transaction (its statement leaves it out).
SQL_ANNOUNCE = Named(
    f"SELECT {announce(':owner::int', ':action::text', ':ids::int[]', ':action_id::uuid')}"
)
# A run held for its owner's approval, when it was not held already: its email is owed.
SQL_HELD = """
INSERT INTO cleanup_policy_holds (policy_id, owner_id, policy_name, action, held_count,
                                  approved_count, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id
"""

# The refusals of a write's budgets, which only defer a run.
BUDGETS = frozenset({Code.ROW_BUDGET_EXCEEDED, Code.SITE_BUDGET_EXCEEDED})
# A run cut off by its bounds, or by the database's own guard against a lock cycle: busy, not
# broken, so it is tried again.
TIMED_OUT = (
    TimeoutError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)
# A failing policy's first wait, doubled at each failure in a row up to its period.
BACKOFF_SECONDS = 60.0
# Run-now's Retry-After once its run was cut off: the lock it waited on is likely still held.
RUN_AGAIN_SECONDS = 30
# A tick stops taking due policies after this long; the next tick carries on.
TICK_SECONDS = 50.0
# How long the tick waits for the host's cached feeds to be dropped after its runs.
FEED_DROP_SECONDS = 30.0


@dataclass(frozen=True)
class Ran:
    last: LastRun
    owner_id: int
    notify: bool = False  # its policy's: an email to its owner after a run that changed posts
    # What it left, it left for the site's budget (a minute's): the tick stops until the next.
    site_held: bool = False
    hold_id: uuid.UUID | None = None  # held for its owner's approval: the email owed

    @property
    def email_owed(self) -> uuid.UUID | None:
        """The run's row whose email is owed, if any."""
        return self.last.action_id if self.notify and self.last.changed_count else None


def _failed(code: Code | str) -> LastRun:
    return LastRun(datetime.now(UTC), "failed", 0, 0, str(code))


async def _runnable(
    conn: Any, owner: int, fields: PolicyFields, settings: Settings
) -> Checked | Code:
    """The run's bounds set, then its statements' parameters, or why it may not run: its owner
    may not act (banned, deactivated, gone), or its filter names a license removed since."""
    row = await conn.fetchrow(
        SQL_RUN_START,
        owner,
        f"{round(settings.policy_run_timeout_seconds * 1000)}ms",
        f"{round(settings.policy_lock_timeout_seconds * 1000)}ms",
    )
    if not row["found"]:
        return Code.USER_NOT_FOUND
    if row["deactivated"]:
        return Code.ACCOUNT_DEACTIVATED
    if row["banned"]:
        return Code.ACCOUNT_BANNED
    try:
        return await check(conn, fields)
    except ProblemError as exc:
        return exc.reason


def _held(settings: Settings, approved: int | None, candidates: int) -> bool:
    """Whether a run of `candidates` posts is far more than the owner approved."""
    return (
        approved is not None
        and candidates > settings.policy_hold_factor * approved
        and candidates > settings.policy_hold_min_posts
    )


async def run_locked(conn: Any, row: asyncpg.Record, settings: Settings, *, scheduled: bool) -> Ran:
    """One run of the policy `row`, locked by the caller in its transaction; `scheduled`: a
    tick's. Bounded by the run's own timeouts, which end the caller's transaction."""
    owner, policy_id = row["owner_id"], row["id"]
    fields = fields_of(row)
    checked = await _runnable(conn, owner, fields, settings)
    if not isinstance(checked, Checked):
        last = _failed(checked)
        await _record(conn, policy_id, last, scheduled, row["every"])
        return Ran(last, owner, row["notify"])
    at = datetime.now(UTC)
    values = checked.named(owner, policy_id, at)
    most = settings.bulk_max_posts
    room = await hold_budget(conn, Budget.of(settings), owner, None, background=True)
    # Counted under the budget's lock: what the run leaves is this less what it changes.
    shape = given(values)
    candidates = int(await conn.fetchval(*counted(shape).bind(values)))
    if _held(settings, row["approved_count"], candidates):
        last = LastRun(at, "held", 0, candidates, None)
        await _record(conn, policy_id, last, scheduled, row["every"])
        before = row["last_run"]
        if before is not None and before.get("status") == "held":
            return Ran(last, owner, fields.notify)  # its owner was told when it was first held
        hold_id = await conn.fetchval(
            SQL_HELD,
            policy_id,
            owner,
            fields.name,
            fields.action,
            candidates,
            row["approved_count"],
            REQUEST_ID.get(),
        )
        return Ran(last, owner, fields.notify, hold_id=hold_id)
    limit = min(most, room.left)
    changed, action_id, ids = 0, None, []
    if limit > 0 and candidates:
        sql = policy_run(fields.action, shape)
        values |= {"actor": None, "most": limit, "room": room.left, "notify": fields.notify}
        values |= action_values(named(fields.action).fixed) | {"request_id": REQUEST_ID.get()}
        done = await conn.fetchrow(*sql.bind(values))
        changed, action_id, ids = int(done["changed"]), done["action_id"], done["changed_ids"]
    left = max(0, candidates - changed)
    status: RunStatus = "deferred" if left and limit < most else "ok"
    # Held by the site's minute: due again at the next tick rather than a period later.
    held = status == "deferred" and room.held_by_site
    last = LastRun(at, status, changed, left, None, action_id)
    await _record(conn, policy_id, last, scheduled and not held, row["every"])
    # Last, the two locks every owner's writes queue for: the site's budget, the stream's order.
    await room.spend(changed)
    if action_id is not None:
        announced = {"owner": owner, "action": fields.action, "ids": ids, "action_id": action_id}
        await conn.fetchval(*SQL_ANNOUNCE.bind(announced))
    return Ran(last, owner, fields.notify, held)


async def _record(
    conn: Any,
    policy_id: uuid.UUID,
    last: LastRun,
    scheduled: bool,
    every: str,
    *,
    backoff: bool = False,
    taken_at: datetime | None = None,
) -> None:
    """The run recorded on its policy (with `taken_at`: only if no other run was since)."""
    period = PERIODS[every].total_seconds()
    await conn.execute(
        SQL_RECORD, policy_id, last, scheduled, period, backoff, BACKOFF_SECONDS, taken_at
    )


async def run_now(
    pool: asyncpg.Pool, principal: Principal, policy_id: uuid.UUID, settings: Settings
) -> tuple[PolicyItem, LastRun]:
    """The owner runs it now, its schedule unchanged; its email goes with the next sweep. A run
    cut off by its bounds is recorded failed and answered 503, nothing changed."""
    owner_only(principal, "runs")
    taken: asyncpg.Record | None = None
    try:
        async with pool.acquire() as conn, conn.transaction():
            taken = await conn.fetchrow(SQL_TAKE_ONE, policy_id, principal.target.id)
            if taken is None:
                raise missing(policy_id)
            if taken["paused_by_moderator"]:
                raise paused_by_moderator()
            last = (await run_locked(conn, taken, settings, scheduled=False)).last
    except TIMED_OUT as exc:
        if taken is None:
            raise
        log.warning("cleanup policy %s: run now cut off (%r)", policy_id, exc)
        async with pool.acquire() as conn:
            await _record(conn, policy_id, _failed(Code.POLICY_RUN_TIMEOUT), False, taken["every"])
        raise ProblemError(
            503,
            "policy-run-timeout",
            "Service Unavailable",
            f"The run took longer than {settings.policy_run_timeout_seconds:g} s (a post it "
            "needed was locked by another change, or the database was busy), so nothing was "
            f"changed. Run it again in {RUN_AGAIN_SECONDS} s.",
            code=Code.POLICY_RUN_TIMEOUT,
            headers={"Retry-After": str(RUN_AGAIN_SECONDS)},
            details={"retry_after_seconds": RUN_AGAIN_SECONDS},
        ) from None
    return await get(pool, principal, policy_id), last


async def _one_due(pool: asyncpg.Pool, settings: Settings) -> Ran | None:
    """Runs the longest overdue policy, if any is due. A run that fails for any reason is
    recorded on its policy, which backs off, and the tick goes on; only losing the database
    itself stops the tick."""
    taken: asyncpg.Record | None = None
    try:
        async with pool.acquire() as conn, conn.transaction():
            taken = await conn.fetchrow(SQL_TAKE_DUE)
            if taken is None:
                return None
            return await run_locked(conn, taken, settings, scheduled=True)
    except Exception as exc:
        if taken is None or _lost(exc):
            raise
        failure = exc
    # Rolled back (its connection may be gone): recorded in a transaction of its own.
    log.warning("cleanup policy %s: its run did not go through (%r)", taken["id"], failure)
    site_held = isinstance(failure, ProblemError) and failure.reason == Code.SITE_BUDGET_EXCEEDED
    backoff = False
    if isinstance(failure, ProblemError) and failure.reason in BUDGETS:
        last = LastRun(datetime.now(UTC), "deferred", 0, 0, None)
    elif isinstance(failure, TIMED_OUT):
        last, backoff = _failed(Code.POLICY_RUN_TIMEOUT), True
    else:
        if not isinstance(failure, asyncpg.PostgresError | ProblemError):
            log.error("cleanup policy %s: its run failed", taken["id"], exc_info=failure)
        reason = failure.reason if isinstance(failure, ProblemError) else Code.INTERNAL
        last, backoff = _failed(reason), True
    async with pool.acquire() as conn:
        await _record(
            conn,
            taken["id"],
            last,
            not site_held,
            taken["every"],
            backoff=backoff,
            taken_at=taken["next_run_at"],
        )
    return Ran(last, taken["owner_id"], site_held=site_held)


def _lost(exc: BaseException) -> bool:
    """Whether `exc` is the database out of reach (the tick stops), not this run's failure."""
    return isinstance(exc, TRANSIENT) and not isinstance(exc, TIMED_OUT)


async def run_due_policies(ctx: dict[str, Any]) -> int:
    """The worker's tick (a scheduled job of the posts feature): every due policy, once."""
    st = state(ctx)
    if not st.settings.cleanup_policies:
        return 0
    ran = changed = 0
    until = time.monotonic() + TICK_SECONDS
    try:
        # Checked again every few minutes, so the database may be out of reach here too.
        if not await promotions_seen(st.pool, st.settings):
            return 0
        while time.monotonic() < until:
            one = await _one_due(st.pool, st.settings)
            if one is None:
                break
            ran += 1
            changed += one.last.changed_count
            st.metrics.scheduled_runs.labels("cleanup_policy", one.last.status).inc()
            # Sent at once while a whole send fits in the tick's time; the sweep sends the rest.
            if one.email_owed and time.monotonic() + send_seconds(st.settings) < until:
                await _email(st.pool, st.settings, one.email_owed, send_policy_run_email)
            if one.hold_id and time.monotonic() + send_seconds(st.settings) < until:
                await _email(st.pool, st.settings, one.hold_id, send_policy_hold_email)
            if one.site_held:  # the site's minute is full: the next tick carries on
                break
    except TRANSIENT as exc:
        # What this tick could not run stays due (a run commits whole or not at all).
        log.warning(
            "cleanup policies: stopped by %s (%s); the next tick runs in a minute",
            type(exc).__name__,
            exc,
        )
    if ran:
        log.info("cleanup policies: %d run, %d posts changed", ran, changed)
    if changed:
        await _drop_host_feeds(st.settings)
    return ran


async def _email(
    pool: asyncpg.Pool,
    settings: Settings,
    row_id: uuid.UUID,
    send: Callable[[asyncpg.Pool, Settings, uuid.UUID], Awaitable[bool]],
) -> None:
    """A run's or a hold's email, taken and sent once; a failure is the sweep's to retry."""
    try:
        await send(pool, settings, row_id)
    except Exception as exc:
        log.warning("cleanup policy email %s: left for the sweep (%r)", row_id, exc)


async def _drop_host_feeds(settings: Settings) -> None:
    """The host's cached feeds, dropped after runs that changed posts, as after any action."""
    if settings.host_cache_redis_url is None:
        return
    cache = create_host_cache(settings.host_cache_redis_url)
    try:
        await FeedDrops(cache, settings.host_cache_patterns).pass_now(FEED_DROP_SECONDS)
    finally:
        await cache.aclose()

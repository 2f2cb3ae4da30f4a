"""A cleanup policy's run, committed whole in the transaction holding its row, and the tick."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, NamedTuple

import asyncpg

from ....core.codes import Code
from ....core.logs import REQUEST_ID
from ....core.presence import people_on
from ....core.problems import ProblemError, unavailable
from ....core.settings import Settings
from ....host.access import Principal
from ....jobs.context import WorkerState, state
from ....jobs.failures import TRANSIENT
from ....mail.notify import send_seconds
from ..actions import named
from ..batch_sql import action_values
from ..filters import given
from ..host_cache import FeedDrops, create_host_cache
from ..live import SQL_ANNOUNCE_EACH
from ..pace import Budget, Rooms, hold_budgets, site_room_in
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
    owned_row,
    owner_only,
    paused_by_moderator,
    promotions_seen,
)
from .sql import counted, policy_run

log = logging.getLogger(__name__)

# The $1 longest overdue policies no other run holds, so any number of workers run each once.
SQL_TAKE_DUE = f"""
SELECT {COLUMNS} FROM cleanup_policies
WHERE enabled AND next_run_at <= now()
ORDER BY next_run_at
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
# In one round trip: the runs' own bounds ($2, $3), below the pool's command timeout so one
# slow run fails alone; their plans ($4); and whether each owner ($1) may act at all, as every
# call of theirs is checked (host/access.py).
SQL_RUN_START = """
SELECT o.id AS owner_id,
       set_config('statement_timeout', $2::text, true), set_config('lock_timeout', $3::text, true),
       set_config('plan_cache_mode', CASE WHEN (
           SELECT min(c.reltuples) FROM pg_class c
           WHERE c.oid IN (to_regclass('posts'), to_regclass('bulk_actions'),
                           to_regclass('cleanup_policy_posts'))) >= $4
       THEN 'force_generic_plan' ELSE 'force_custom_plan' END, true),
       u.id IS NOT NULL AS found, coalesce(u.deactivated, false) AS deactivated,
       coalesce(u.banned_until > now(), false) AS banned
FROM unnest($1::int[]) AS o(id) LEFT JOIN users u ON u.id = o.id
"""
# A scheduled run moves next_run_at past now by whole periods: a late policy runs once. A failed
# one (`backoff`) backs off instead, behind every policy due before it; `taken_at`, when set,
# records only on the very run taken (a failure is recorded after its rollback, when another
# tick may have taken it since).
SQL_RECORD = """
UPDATE cleanup_policies c
SET last_run = r.last, runs = c.runs + 1,
    failures = CASE WHEN r.backoff THEN c.failures + 1
                    WHEN r.last ->> 'status' = 'failed' THEN c.failures ELSE 0 END,
    next_run_at = CASE
        WHEN r.backoff THEN now() + make_interval(
            secs => least(r.period, $2::float8 * power(2, least(c.failures, 30))))
        WHEN r.scheduled THEN c.next_run_at + make_interval(
            secs => r.period * (floor(extract(epoch FROM now() - c.next_run_at) / r.period) + 1))
        ELSE c.next_run_at END
FROM unnest($1::uuid[], $3::jsonb[], $4::bool[], $5::float8[], $6::bool[], $7::timestamptz[])
     AS r(id, last, scheduled, period, backoff, taken_at)
WHERE c.id = r.id AND (r.taken_at IS NULL OR c.next_run_at = r.taken_at)
"""
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
# Due policies run together in one transaction, at most this many: its commit and its locks
# (the site's budget, the stream's order) are paid once for them all, and an owner's write
# waits on a batch's lock for a few milliseconds.
BATCH_RUNS = 32
# Runs keep one plan a connection (generic), not planning each run anew, once the tables they
# read and grow hold this many rows by their statistics; a plan made while one of them looked
# empty would read it whole at every run until its next analyze.
GENERIC_PLANS_FROM_ROWS = 10_000
# A failing policy's first wait, doubled at each failure in a row up to its period.
BACKOFF_SECONDS = 60.0
# Run-now's Retry-After once its run was cut off: the lock it waited on is likely still held.
RUN_AGAIN_SECONDS = 30
# A tick stops taking due policies after this long; the next tick carries on.
TICK_SECONDS = 50.0
# The least a tick held by the site's minute waits before it takes due policies again.
SITE_ROOM_PAUSE = 0.25
# How long the tick waits for the host's cached feeds to be dropped after its runs.
FEED_DROP_SECONDS = 30.0


@dataclass(frozen=True)
class Ran:
    last: LastRun
    email_owed: uuid.UUID | None = None  # changed posts, its policy's `notify` on: its row's email
    # What it left, it left for the site's budget (a minute's): the tick waits for room.
    site_held: bool = False
    hold_id: uuid.UUID | None = None  # held for its owner's approval: the email owed


def _failed(code: Code | str) -> LastRun:
    return LastRun(datetime.now(UTC), "failed", 0, 0, str(code))


class _Record(NamedTuple):
    """A run's outcome to write on its policy (`SQL_RECORD`)."""

    policy_id: uuid.UUID
    last: LastRun
    scheduled: bool
    every: str
    backoff: bool = False
    taken_at: datetime | None = None


async def _record(conn: Any, records: list[_Record]) -> None:
    """The runs recorded on their policies, in one statement."""
    if records:
        ids, lasts, scheduled, every, backoff, taken_at = zip(*records, strict=True)
        periods = [PERIODS[e].total_seconds() for e in every]
        await conn.execute(
            SQL_RECORD, ids, BACKOFF_SECONDS, lasts, scheduled, periods, backoff, taken_at
        )


async def _refusals(conn: Any, owners: list[int], settings: Settings) -> dict[int, Code | None]:
    """The runs' bounds set, and why each owner may not act, if so: banned, deactivated, gone."""
    rows = await conn.fetch(
        SQL_RUN_START,
        owners,
        f"{round(settings.policy_run_timeout_seconds * 1000)}ms",
        f"{round(settings.policy_lock_timeout_seconds * 1000)}ms",
        GENERIC_PLANS_FROM_ROWS,
    )
    return {
        row["owner_id"]: Code.USER_NOT_FOUND
        if not row["found"]
        else Code.ACCOUNT_DEACTIVATED
        if row["deactivated"]
        else Code.ACCOUNT_BANNED
        if row["banned"]
        else None
        for row in rows
    }


class _Change(NamedTuple):
    """A run that changed posts: its `posts_changed` is owed."""

    owner: int
    action: str
    action_id: uuid.UUID
    ids: list[int]


@dataclass
class _Runs:
    """Runs of policies in one transaction: what each recorded, and what they owe at its end."""

    conn: Any
    settings: Settings
    rooms: Rooms
    scheduled: bool
    records: list[_Record] = field(default_factory=list)
    ran: list[Ran] = field(default_factory=list)
    changes: list[_Change] = field(default_factory=list)

    def done(self, row: asyncpg.Record, ran: Ran) -> None:
        # A run the site's minute held is due again at the next tick rather than a period later.
        on_time = self.scheduled and not ran.site_held
        self.records.append(_Record(row["id"], ran.last, on_time, row["every"]))
        self.ran.append(ran)

    async def run(self, row: asyncpg.Record, refused: Code | None) -> None:
        """One run of the policy `row`; `refused`: why its owner may not act, if so."""
        conn, settings = self.conn, self.settings
        owner, policy_id = row["owner_id"], row["id"]
        fields = fields_of(row)
        try:
            checked = refused or await check(conn, fields)
        except ProblemError as exc:  # a filter naming a license removed since
            checked = exc.reason
        if not isinstance(checked, Checked):
            return self.done(row, Ran(_failed(checked)))
        at = datetime.now(UTC)
        values = checked.named(owner, policy_id, at)
        shape = given(values)
        candidates: int | None = None
        if row["approved_count"] is not None:  # counted first: the run may be held for it
            candidates = int(await conn.fetchval(*counted(shape).bind(values)))
            far_more = settings.policy_hold_factor * row["approved_count"]
            if candidates > max(far_more, settings.policy_hold_min_posts):
                return await self._hold(row, fields, LastRun(at, "held", 0, candidates, None))
        room, most = self.rooms.room(owner), settings.bulk_max_posts
        limit = min(most, room.left)
        changed, action_id, ids = 0, None, []
        if limit > 0 and candidates != 0:
            sql = policy_run(fields.action, shape)
            values |= {"actor": None, "most": limit, "room": room.left, "notify": fields.notify}
            values |= action_values(named(fields.action).fixed) | {"request_id": REQUEST_ID.get()}
            done = await conn.fetchrow(*sql.bind(values))
            changed, action_id, ids = int(done["changed"]), done["action_id"], done["changed_ids"]
        if candidates is not None:
            left = max(0, candidates - changed)
        elif changed < limit:  # it took every candidate there was
            left = 0
        else:  # counted after it, in its transaction: what it left
            left = int(await conn.fetchval(*counted(shape).bind(values)))
        status: RunStatus = "deferred" if left and limit < most else "ok"
        last = LastRun(at, status, changed, left, None, action_id)
        owed = action_id if fields.notify and changed else None
        self.done(row, Ran(last, owed, status == "deferred" and room.held_by_site))
        self.rooms.take(owner, changed)
        if action_id is not None:
            self.changes.append(_Change(owner, fields.action, action_id, ids))

    async def _hold(self, row: asyncpg.Record, fields: PolicyFields, last: LastRun) -> None:
        """The run held for its owner's approval, its email owed when it was not held before."""
        owner, hold_id = row["owner_id"], None
        if (row["last_run"] or {}).get("status") != "held":
            hold = (fields.name, fields.action, last.left_count, row["approved_count"])
            hold_id = await self.conn.fetchval(SQL_HELD, row["id"], owner, *hold, REQUEST_ID.get())
        self.done(row, Ran(last, hold_id=hold_id))

    async def close(self) -> list[Ran]:
        """Recorded, then the two locks every owner's writes queue for, last: the site's
        budget, the stream's order."""
        await _record(self.conn, self.records)
        await self.rooms.spend()
        if self.changes:
            lasts = list(accumulate(len(c.ids) for c in self.changes))
            announced = {
                "owners": [c.owner for c in self.changes],
                "actions": [c.action for c in self.changes],
                "action_ids": [c.action_id for c in self.changes],
                "ids": [i for c in self.changes for i in c.ids],
                "firsts": [1, *(last + 1 for last in lasts[:-1])],
                "lasts": lasts,
            }
            await self.conn.fetchval(*SQL_ANNOUNCE_EACH.bind(announced))
        return self.ran


async def run_locked(
    conn: Any, rows: list[asyncpg.Record], settings: Settings, *, scheduled: bool
) -> list[Ran]:
    """Runs of the policies `rows`, locked by the caller in its transaction and committed with
    it; `scheduled`: a tick's. Bounded by the runs' own timeouts, which end the transaction."""
    owners = list(dict.fromkeys(row["owner_id"] for row in rows))
    refusals = await _refusals(conn, owners, settings)
    may = [owner for owner in owners if refusals[owner] is None]
    runs = _Runs(conn, settings, await hold_budgets(conn, Budget.of(settings), may), scheduled)
    for row in rows:
        await runs.run(row, refusals[row["owner_id"]])
        if runs.ran[-1].site_held:  # the site's minute is full: the rest stay due
            break
    return await runs.close()


async def run_now(
    pool: asyncpg.Pool, principal: Principal, policy_id: uuid.UUID, settings: Settings
) -> tuple[PolicyItem, LastRun]:
    """The owner runs it now, its schedule unchanged; its email goes with the next sweep. A run
    cut off by its bounds is recorded failed and answered 503, nothing changed."""
    owner_only(principal, "runs")
    taken: asyncpg.Record | None = None
    try:
        async with pool.acquire() as conn, conn.transaction():
            taken = await owned_row(conn, principal, policy_id, lock=True)
            if taken["paused_by_moderator"]:
                raise paused_by_moderator()
            (ran,) = await run_locked(conn, [taken], settings, scheduled=False)
    except TIMED_OUT as exc:
        if taken is None:
            raise
        log.warning("cleanup policy %s: run now cut off (%r)", policy_id, exc)
        cut = _Record(policy_id, _failed(Code.POLICY_RUN_TIMEOUT), False, taken["every"])
        await _record(pool, [cut])
        raise unavailable(
            f"The run took longer than {settings.policy_run_timeout_seconds:g} s (a post it "
            "needed was locked by another change, or the database was busy), so nothing was "
            f"changed. Run it again in {RUN_AGAIN_SECONDS} s.",
            "policy-run-timeout",
            RUN_AGAIN_SECONDS,
            code=Code.POLICY_RUN_TIMEOUT,
        ) from None
    return await get(pool, principal, policy_id), ran.last


async def _some_due(pool: asyncpg.Pool, settings: Settings, most: int) -> list[Ran]:
    """Runs the `most` longest overdue policies in one transaction, if any are due. When that
    fails, they run again one a transaction, so that only a failing run fails."""
    taken: list[asyncpg.Record] = []
    try:
        async with pool.acquire() as conn, conn.transaction():
            taken = await conn.fetch(SQL_TAKE_DUE, most)
            return await run_locked(conn, taken, settings, scheduled=True) if taken else []
    except Exception as exc:
        # One at a time, a failure to take one is the tick's, not a run's.
        if _lost(exc) or (most == 1 and not taken):
            raise
        if len(taken) == 1:
            return [await _failed_run(pool, taken[0], exc)]
        log.info("cleanup policies: %d runs together did not go through (%r)", len(taken), exc)
    ran: list[Ran] = []
    for _ in taken:
        one = await _some_due(pool, settings, 1)
        ran += one
        if not one or one[-1].site_held:
            break
    return ran


async def _failed_run(pool: asyncpg.Pool, taken: asyncpg.Record, failure: Exception) -> Ran:
    """A run that failed, but not by losing the database, recorded apart from its rolled-back
    transaction (its connection may be gone): its policy backs off and the tick goes on."""
    log.warning("cleanup policy %s: its run did not go through (%r)", taken["id"], failure)
    site_held = isinstance(failure, ProblemError) and failure.reason == Code.SITE_BUDGET_EXCEEDED
    if isinstance(failure, ProblemError) and failure.reason in BUDGETS:
        last = LastRun(datetime.now(UTC), "deferred", 0, 0, None)
    elif isinstance(failure, TIMED_OUT):
        last = _failed(Code.POLICY_RUN_TIMEOUT)
    else:
        if not isinstance(failure, asyncpg.PostgresError | ProblemError):
            log.error("cleanup policy %s: its run failed", taken["id"], exc_info=failure)
        last = _failed(failure.reason if isinstance(failure, ProblemError) else Code.INTERNAL)
    backoff = last.status == "failed"  # a deferred run waits for its budget, not a backoff
    record = _Record(
        taken["id"], last, not site_held, taken["every"], backoff, taken["next_run_at"]
    )
    await _record(pool, [record])
    return Ran(last, site_held=site_held)


def _lost(exc: BaseException) -> bool:
    """Whether `exc` is the database out of reach (the tick stops), not this run's failure."""
    return isinstance(exc, TRANSIENT) and not isinstance(exc, TIMED_OUT)


async def _send_owed(st: WorkerState, one: Ran, until: float) -> None:
    """The run's emails, sent at once while a whole send fits in the tick's time, else by the
    sweep, which also retries one that failed here."""
    owed = ((one.email_owed, send_policy_run_email), (one.hold_id, send_policy_hold_email))
    for row_id, send in owed:
        if row_id and time.monotonic() + send_seconds(st.settings) < until:
            try:
                await send(st.pool, st.settings, row_id)
            except Exception as exc:
                log.warning("cleanup policy email %s: left for the sweep (%r)", row_id, exc)


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
            began = time.monotonic()
            some = await _some_due(st.pool, st.settings, BATCH_RUNS)
            busy = time.monotonic() - began
            for one in some:
                ran += 1
                changed += one.last.changed_count
                st.metrics.scheduled_runs.labels("cleanup_policy", one.last.status).inc()
                await _send_owed(st, one, until)
            if not some:
                break
            if some[-1].site_held:
                # The site's minute is full: its oldest spends leave it within the minute, so
                # the tick waits for them when it can, rather than leave it to the next tick.
                wait = max(SITE_ROOM_PAUSE, await site_room_in(st.pool))
                if time.monotonic() + wait >= until:
                    break
                await asyncio.sleep(wait)
                continue
            # While people are on, the tick rests between batches; at night it need not.
            share = st.settings.policy_busy_share
            if share < 1 and await people_on(ctx["redis"]):
                await asyncio.sleep(busy * (1 / share - 1))
    except TRANSIENT as exc:
        # What this tick could not run stays due (a run commits whole or not at all).
        log.warning(
            "cleanup policies: stopped by %s (%s); the next tick runs in a minute",
            type(exc).__name__,
            exc,
        )
    if ran:
        log.info("cleanup policies: %d run, %d posts changed", ran, changed)
    if changed and st.settings.host_cache_redis_url is not None:
        # The host's cached feeds, dropped after runs that changed posts, as after any action.
        cache = create_host_cache(st.settings.host_cache_redis_url)
        try:
            await FeedDrops(cache, st.settings.host_cache_patterns).pass_now(FEED_DROP_SECONDS)
        finally:
            await cache.aclose()
    return ran

"""Recurring exports, started by the sweep when due, each incremental against the one before."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import asyncpg
from arq.connections import ArqRedis

from ...core.locks import SQL_XACT_LOCK, AdvisoryLock
from ...core.problems import ProblemError
from ...jobs.context import WorkerState
from .incremental import changed_count, followed, removed
from .service import SQL_ARTWORKS, SQL_RUNNING, enqueue

if TYPE_CHECKING:
    from ...core.db import Conn

log = logging.getLogger(__name__)

# With the account's state: a deactivated or banned user cannot sign in to see or cancel it.
SQL_DUE = """
SELECT s.user_id, u.id IS NULL AS user_gone, coalesce(u.deactivated, false) AS deactivated,
       CASE WHEN u.banned_until > now() THEN u.banned_until END AS banned_until
FROM export_schedules s LEFT JOIN users u ON u.id = s.user_id
WHERE s.cancelled_at IS NULL AND s.remaining > 0 AND s.next_at <= now()
ORDER BY s.next_at
LIMIT 50
FOR UPDATE OF s SKIP LOCKED
"""
SQL_CANCEL_FOR = """
UPDATE export_schedules SET cancelled_at = now(), cancel_reason = $2 WHERE user_id = $1
"""
# Each keeps the layout of the schedule's export before it: the first one's, as asked.
SQL_START = """
INSERT INTO exports (user_id, user_sqid, part_bytes, include_comments, include_reactions,
                     send_email, artwork_count, include_upscaled, follows_id,
                     follows_started_at, base_post_ids, scheduled, layout)
SELECT $1, s.user_sqid, s.part_bytes, s.include_comments, s.include_reactions, s.send_email, $2,
       s.include_upscaled, $3, $4, $5, true,
       coalesce((SELECT e.layout FROM exports e WHERE e.id = s.last_export_id), 'bagit')
FROM export_schedules s WHERE s.user_id = $1
RETURNING id
"""
# The next date from the one due, so a schedule keeps its rhythm, unless it is far behind.
SQL_ADVANCE = """
UPDATE export_schedules
SET remaining = remaining - 1, last_export_id = coalesce($2, last_export_id),
    next_at = greatest(next_at + make_interval(days => every_days),
                       now() + make_interval(days => every_days) / 2)
WHERE user_id = $1
"""


async def start_due_exports(st: WorkerState, redis: ArqRedis) -> int:
    """Start what is due; the number of exports started."""
    started: list[uuid.UUID] = []
    async with st.pool.acquire() as conn, conn.transaction():
        for due in await conn.fetch(SQL_DUE):
            user_id = due["user_id"]
            if (reason := _account_reason(due)) is not None:
                await conn.execute(SQL_CANCEL_FOR, user_id, reason)
                log.info("recurring export of user %d cancelled: %s", user_id, reason)
                continue
            await conn.execute(SQL_XACT_LOCK, AdvisoryLock.EXPORT_START, user_id)
            if await conn.fetchrow(SQL_RUNNING, user_id) is not None:
                continue  # the next sweep tries again
            export_id = await _start(conn, user_id)
            await conn.execute(SQL_ADVANCE, user_id, export_id)
            if export_id is not None:
                started.append(export_id)
    for export_id in started:
        await enqueue(redis, export_id)  # a failure is the sweep's to redo: the row is pending
    if started:
        log.info("recurring exports: %d started", len(started))
    return len(started)


def _account_reason(due: asyncpg.Record) -> str | None:
    """Why the account can no longer have its recurring export, or None."""
    if due["user_gone"]:
        return "The account no longer exists."
    if due["deactivated"]:
        return "The account was deactivated: no further export is made or emailed."
    if due["banned_until"] is not None:
        return (
            f"The account is banned until {due['banned_until']:%Y-%m-%d %H:%M} UTC: no further "
            "export is made or emailed; a new schedule can be asked for once the ban is over."
        )
    return None


async def _start(conn: Conn, user_id: int) -> uuid.UUID | None:
    try:
        follows = await followed(conn, user_id, "last")
    except ProblemError:  # none was ready (the first failed, say): a full one instead
        count = await conn.fetchval(SQL_ARTWORKS, user_id)
        if not count:
            return None
        export_id: uuid.UUID = await conn.fetchval(SQL_START, user_id, count, None, None, None)
        return export_id
    count = await changed_count(conn, user_id, follows)
    if not count and not await removed(conn, user_id, follows.post_ids):
        log.info(
            "recurring export of user %d: nothing changed since %s", user_id, follows.export_id
        )
        return None
    export_id = await conn.fetchval(
        SQL_START, user_id, count, follows.export_id, follows.started_at, follows.post_ids
    )
    return export_id

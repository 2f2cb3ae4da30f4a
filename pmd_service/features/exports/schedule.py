"""Recurring exports: the schedule's row (one a user), checked, made, shown and cancelled."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import msgspec

from ...core.codes import Code
from ...core.db import from_row
from ...core.named_sql import Named
from ...core.problems import FieldError, ProblemError, conflict, not_found
from ...core.settings import Settings
from .schemas import ExportItem, ExportRequest, ExportSchedule

if TYPE_CHECKING:
    from ...core.db import Conn

SQL_ACTIVE = """
SELECT every_days, remaining, next_at, last_export_id, send_email FROM export_schedules
WHERE user_id = $1 AND cancelled_at IS NULL AND remaining > 0
"""
# Shown: the active schedule, or one the service cancelled (with why) until a new one.
SQL_SHOWN = """
SELECT every_days, remaining, next_at, last_export_id, send_email, cancelled_at, cancel_reason
FROM export_schedules
WHERE user_id = $1 AND (cancelled_at IS NULL AND remaining > 0 OR cancel_reason IS NOT NULL)
"""
# A finished or cancelled schedule's row is taken over by the new one, its first export's options.
SQL_SCHEDULE = Named("""
INSERT INTO export_schedules (user_id, user_sqid, every_days, remaining, next_at, last_export_id,
                              part_bytes, include_comments, include_reactions, include_upscaled,
                              send_email)
VALUES (:user_id, :user_sqid, :every_days, :remaining, now() + make_interval(days => :every_days),
        :id, :part_bytes, :include_comments, :include_reactions, :include_upscaled, :send_email)
ON CONFLICT (user_id) DO UPDATE SET
    user_sqid = EXCLUDED.user_sqid, every_days = EXCLUDED.every_days,
    remaining = EXCLUDED.remaining, next_at = EXCLUDED.next_at,
    last_export_id = EXCLUDED.last_export_id, part_bytes = EXCLUDED.part_bytes,
    include_comments = EXCLUDED.include_comments, include_reactions = EXCLUDED.include_reactions,
    include_upscaled = EXCLUDED.include_upscaled, send_email = EXCLUDED.send_email,
    created_at = now(), cancelled_at = NULL, cancel_reason = NULL
""")
SQL_CANCEL_SCHEDULE = """
UPDATE export_schedules SET cancelled_at = now()
WHERE user_id = $1 AND cancelled_at IS NULL AND remaining > 0
RETURNING 1
"""


def _bad(field: str, detail: str, message: str) -> ProblemError:
    return ProblemError(
        400,
        "invalid-schedule",
        "Bad Request",
        detail,
        errors=[FieldError(field=field, message=message)],
        code=Code.INVALID_SCHEDULE,
    )


def checked_repeat(body: ExportRequest, settings: Settings) -> tuple[int, int] | None:
    """(every_days, times) of a recurring request, None for a one-off, or a 400 naming the value."""
    every, times = body.repeat_every_days, body.repeat_times
    if every is None and times is None:
        return None
    if every is None or times is None:
        missing = "repeat_every_days" if every is None else "repeat_times"
        raise _bad(
            missing,
            f"A recurring export needs both `repeat_every_days` and "
            f"`repeat_times`; `{missing}` is missing.",
            "is needed with the other",
        )
    low, high = settings.export_repeat_min_days, settings.export_repeat_max_days
    if not low <= every <= high:
        raise _bad(
            "repeat_every_days",
            f"`repeat_every_days` must lie within {low} and {high}; got {every}.",
            f"must lie within {low} and {high}",
        )
    most = settings.export_repeat_max_times
    if not 2 <= times <= most:
        raise _bad(
            "repeat_times",
            f"`repeat_times` counts the exports, this one included: 2 to {most}; got {times}.",
            f"must lie within 2 and {most}",
        )
    if body.since is not None:
        raise _bad(
            "since",
            "A recurring export starts with a full export: leave `since` out "
            "(each later one follows the one before by itself).",
            "cannot go with repeat_every_days",
        )
    return every, times


async def refuse_if_scheduled(conn: Conn, user_id: int) -> None:
    found = await conn.fetchrow(SQL_ACTIVE, user_id)
    if found is not None:
        raise conflict(
            f"A recurring export is already scheduled (every {found['every_days']} days, "
            f"{found['remaining']} to come); cancel it first with DELETE "
            "/api/pmd/exports/schedule.",
            "export-scheduled",
            code=Code.EXPORT_SCHEDULED,
        )


async def schedule(
    conn: Conn, user_id: int, user_sqid: str | None, repeat: tuple[int, int], first: ExportItem
) -> None:
    """The schedule whose first export is `first`, with its options."""
    every, times = repeat
    row = {"user_id": user_id, "user_sqid": user_sqid, "every_days": every, "remaining": times - 1}
    await conn.execute(*SQL_SCHEDULE.bind(msgspec.structs.asdict(first) | row))


async def active(pool: asyncpg.Pool, user_id: int) -> ExportSchedule | None:
    row = await pool.fetchrow(SQL_SHOWN, user_id)
    return None if row is None else from_row(ExportSchedule, row)


async def cancel(pool: asyncpg.Pool, user_id: int) -> None:
    if await pool.fetchval(SQL_CANCEL_SCHEDULE, user_id) is None:
        raise not_found("There is no recurring export to cancel.", code=Code.SCHEDULE_NOT_FOUND)

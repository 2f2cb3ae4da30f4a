"""Retention of the BDR event log that SSE clients resume from."""

from __future__ import annotations

from typing import Any

from .context import state

SQL_PURGE_EVENTS = "DELETE FROM bdr_events WHERE created_at < now() - interval '1 day'"


async def purge_old_events(ctx: dict[str, Any]) -> int:
    """Daily: events older than a day go; a client resuming from one gets `reset` + snapshot."""
    result: str = await state(ctx).pool.execute(SQL_PURGE_EVENTS)
    return int(result.split()[-1])

"""The exports' event kind: `export_update`, an export as its card shows it, a few KB."""

from __future__ import annotations

from ...core.limits import NEWEST_ITEMS
from ...sse.kinds import Audience, EventKind, Snapshot
from . import event_sql
from .schemas import EVENT_PARTS, ExportUpdate, export_update

KIND = "export"

EXPORT_UPDATE = EventKind(
    kind=KIND,
    event=b"export_update",
    data=ExportUpdate,
    make=export_update,
    # What the user exports of their own is theirs: a moderator watching them never sees it.
    audience=Audience.OWNER,
    summary=f"per change of an export, a few KB whatever the export: counts and at most "
    f"{EVENT_PARTS} parts, GET the export for the rest (an opening holds one per export of the "
    f"{NEWEST_ITEMS} newest)",
    snapshot=Snapshot(
        f"""SELECT json_agg(export_event_payload(e) ORDER BY e.created_at DESC, e.id DESC)::text
            FROM exports e
            WHERE e.id = ANY(ARRAY(
                SELECT id FROM exports WHERE user_id = :user
                ORDER BY created_at DESC, id DESC LIMIT {NEWEST_ITEMS}))"""
    ),
    repeatable=("export_events.sql", event_sql.repeatable_sql),
)

# The feature's event kinds, in the order an opening's snapshot sends them.
EVENTS: tuple[EventKind, ...] = (EXPORT_UPDATE,)

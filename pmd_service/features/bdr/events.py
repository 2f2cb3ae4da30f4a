"""The download requests' event kind: `bdr_update`, a request as its card shows it."""

from __future__ import annotations

from ...core.limits import NEWEST_ITEMS
from ...sse.kinds import Audience, EventKind, Snapshot
from . import event_sql
from .schemas import ITEM_COLUMNS, BdrItem, bdr_item

BDR_UPDATE = EventKind(
    kind="bdr",
    event=b"bdr_update",
    data=BdrItem,
    make=bdr_item,
    # A moderator watching the user sees the downloads, theirs and the user's.
    audience=Audience.WATCHERS,
    summary=f"per change of a download request (an opening holds one per request of the "
    f"{NEWEST_ITEMS} newest)",
    snapshot=Snapshot(
        f"""SELECT json_agg(b ORDER BY b.created_at DESC, b.id DESC)::text FROM (
            SELECT {ITEM_COLUMNS} FROM batch_download_requests
            WHERE user_id = :user ORDER BY created_at DESC, id DESC LIMIT {NEWEST_ITEMS}) AS b"""
    ),
    repeatable=("bdr_events.sql", event_sql.repeatable_sql),
)

# The feature's event kinds, in the order an opening's snapshot sends them.
EVENTS: tuple[EventKind, ...] = (BDR_UPDATE,)

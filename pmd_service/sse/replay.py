"""What a stream starts with: the snapshot, or the events a resuming client missed."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
import msgspec

from ..bdr.schemas import ITEM_COLUMNS
from ..core.limits import NEWEST_ITEMS
from . import frames
from .recent import RecentEvents

log = logging.getLogger(__name__)

# More missed events than this and a fresh snapshot is the cheaper way to catch up.
MAX_REPLAY = 2000

# One statement, so one MVCC snapshot: the BDR rows and the newest event id agree. Every event
# up to `watermark` is reflected in the rows; every later one will reach the stream live.
# The owner's stream holds the newest exports too ($2), as their events carry them
# (`export_event_payload`: a few KB each, whatever the export).
SQL_SNAPSHOT = f"""
SELECT w.watermark, w.exports, b.*
FROM (
    SELECT coalesce(max(id), 0) AS watermark,
           CASE WHEN $2 THEN (
               SELECT json_agg(export_event_payload(e) ORDER BY e.created_at DESC, e.id DESC)::text
               FROM exports e
               WHERE e.id = ANY(ARRAY(
                   SELECT id FROM exports WHERE user_id = $1
                   ORDER BY created_at DESC, id DESC LIMIT {NEWEST_ITEMS}))
           ) END AS exports
    FROM stream_events
) AS w
LEFT JOIN LATERAL (
    SELECT {ITEM_COLUMNS} FROM batch_download_requests
    WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT {NEWEST_ITEMS}
) AS b ON true
"""
SQL_EVENT_KNOWN = "SELECT EXISTS (SELECT 1 FROM stream_events WHERE id = $1)"
# A posts event names its user as -user_id (migrations/0015_posts_changed_events.sql).
SQL_MISSED = """
SELECT id, payload::text AS payload FROM stream_events
WHERE user_id IN ($1::int, -$1::int) AND id > $2 ORDER BY id LIMIT $3
"""


@dataclass(frozen=True, slots=True)
class Opening:
    body: bytes
    # Everything up to this event id is in `body` (or reflected in it): live events with an id
    # at or below it are duplicates.
    watermark: int


def parse_last_event_id(raw: str | None) -> int | None:
    """None when absent; -1 (never an event id, so "too old") when not an event id at all."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return -1
    return int(raw)


def _connected(watermark: int, resumed: bool) -> bytes:
    return frames.event(b"connected", {"resumed": resumed}, watermark or None)


def _frames(events: Iterable[tuple[int, str]], owner: bool) -> list[bytes]:
    out = []
    for event_id, payload in events:
        try:
            frame = frames.update_from_payload(payload, event_id)
        except frames.UnknownKind:  # a later release's
            continue
        except Exception:  # as the hub does live: one bad row must not fail every resume
            log.exception(
                "SSE: event %d has a payload no stream event is made of; skipped", event_id
            )
            continue
        if owner or not frames.is_export_frame(frame):
            out.append(frame)
    return out


def resumed_from_memory(
    recent: RecentEvents, user_id: int, last_event_id: int | None, owner: bool = True
) -> Opening | None:
    """The opening of a stream resuming after an event the hub still holds, with no query:
    what a reconnect storm is made of. None when the table must answer (no id, an id the
    hub cannot vouch for, or more missed events than a replay sends)."""
    if last_event_id is None:
        return None
    missed = recent.missed(user_id, last_event_id)
    if missed is None or len(missed) > MAX_REPLAY:
        return None
    body = _frames(missed, owner)
    # `connected` carries the client's newest event, as from the table; the watermark is the
    # newest kept: the subscriber is registered already, so every later event reaches it
    # live, and none of this user's up to it is missing from this body.
    after = missed[-1][0] if missed else last_event_id
    return Opening(b"".join([*body, _connected(after, True)]), recent.newest)


async def opening(
    pool: asyncpg.Pool, user_id: int, last_event_id: int | None, owner: bool = True
) -> Opening:
    """`owner`: the stream is the user's own (a moderator's gets no export events)."""
    reset = b""
    if last_event_id is not None:
        async with pool.acquire() as conn:
            # "Still in the table" means nothing after it has been purged (events go by age,
            # oldest first); an id that was never issued (or is from another database) is not.
            if last_event_id >= 0 and await conn.fetchval(SQL_EVENT_KNOWN, last_event_id):
                rows = await conn.fetch(SQL_MISSED, user_id, last_event_id, MAX_REPLAY + 1)
                if len(rows) <= MAX_REPLAY:
                    after: int = rows[-1]["id"] if rows else last_event_id
                    missed = _frames(((r["id"], r["payload"]) for r in rows), owner)
                    return Opening(b"".join([*missed, _connected(after, True)]), after)
        reset = frames.event(
            b"reset",
            {"detail": "The last event id is too old or unknown; here is a fresh snapshot."},
        )
    rows = await pool.fetch(SQL_SNAPSHOT, user_id, owner)
    watermark: int = rows[0]["watermark"]
    items = [frames.bdr_update(r) for r in rows if r["id"] is not None]
    exports = msgspec.json.decode(rows[0]["exports"]) if rows[0]["exports"] else []
    items += [frames.export_update(e) for e in exports]
    return Opening(b"".join([reset, *items, _connected(watermark, False)]), watermark)

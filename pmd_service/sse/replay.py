"""What a stream starts with: the snapshot, or the events a resuming client missed."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
import msgspec

from ..core.named_sql import Named
from . import frames
from .kinds import EventKinds, reaches
from .recent import RecentEvents, Row

log = logging.getLogger(__name__)

# More missed events than this and a fresh snapshot is the cheaper way to catch up.
MAX_REPLAY = 2000

# The daily cleanup's (upkeep/cleanup.py): events a day older than its `clock`.
_EVENT_PURGE = "created_at < :clock::timestamptz - interval '1 day'"
EVENTS_PAST = f"SELECT count(*) FROM stream_events WHERE {_EVENT_PURGE}"
SQL_PURGE_EVENTS = Named(f"DELETE FROM stream_events WHERE {_EVENT_PURGE}")

SQL_EVENT_KNOWN = "SELECT EXISTS (SELECT 1 FROM stream_events WHERE id = $1)"
SQL_MISSED = """
SELECT id, kind, audience, payload::text AS payload FROM stream_events
WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3
"""


@functools.cache
def snapshot_sql(kinds: EventKinds) -> Named:
    """One statement, so one MVCC snapshot: every kind's items and the newest event id agree.
    Every event up to `watermark` is reflected in the items; every later one will reach the
    stream live. `user`: the user; `own`: whether the stream is the user's own."""
    columns = ["(SELECT coalesce(max(id), 0) FROM stream_events) AS watermark"]
    for i, (kind, snapshot) in enumerate(kinds.snapshots()):
        items = f"({snapshot.sql})"
        if not reaches(kind.audience, own=False):
            items = f"CASE WHEN :own::boolean THEN {items} END"
        columns.append(f"{items} AS s{i}")
    return Named("SELECT " + ",\n       ".join(columns))


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


def _frames(kinds: EventKinds, events: Iterable[Row], owner: bool) -> list[bytes]:
    out = []
    for event_id, kind, audience, payload in events:
        if not reaches(audience, owner) or not kinds.replayed(kind):  # or a later release's kind
            continue
        try:
            out.append(kinds.frame(kind, payload, event_id))
        except Exception:  # as the hub does live: one bad row must not fail every resume
            log.exception(
                "SSE: event %d has a payload no stream event is made of; skipped", event_id
            )
    return out


def resumed_from_memory(
    kinds: EventKinds,
    recent: RecentEvents,
    user_id: int,
    last_event_id: int | None,
    owner: bool = True,
) -> Opening | None:
    """The opening of a stream resuming after an event the hub still holds, with no query:
    what a reconnect storm is made of. None when the table must answer (no id, an id the
    hub cannot vouch for, or more missed events than a replay sends)."""
    if last_event_id is None:
        return None
    missed = recent.missed(user_id, last_event_id)
    if missed is None or len(missed) > MAX_REPLAY:
        return None
    body = _frames(kinds, missed, owner)
    # `connected` carries the client's newest event, as from the table; the watermark is the
    # newest kept: the subscriber is registered already, so every later event reaches it
    # live, and none of this user's up to it is missing from this body.
    after = missed[-1][0] if missed else last_event_id
    return Opening(b"".join([*body, _connected(after, True)]), recent.newest)


async def opening(
    pool: asyncpg.Pool,
    kinds: EventKinds,
    user_id: int,
    last_event_id: int | None,
    owner: bool = True,
) -> Opening:
    """`owner`: the stream is the user's own (a moderator's gets only the events whose audience
    is the user's watchers)."""
    reset = b""
    if last_event_id is not None:
        async with pool.acquire() as conn:
            # "Still in the table" means nothing after it has been purged (events go by age,
            # oldest first); an id that was never issued (or is from another database) is not.
            if last_event_id >= 0 and await conn.fetchval(SQL_EVENT_KNOWN, last_event_id):
                rows = await conn.fetch(SQL_MISSED, user_id, last_event_id, MAX_REPLAY + 1)
                if len(rows) <= MAX_REPLAY:
                    after: int = rows[-1]["id"] if rows else last_event_id
                    missed = _frames(kinds, ((r[0], r[1], r[2], r[3]) for r in rows), owner)
                    return Opening(b"".join([*missed, _connected(after, True)]), after)
        reset = frames.event(
            b"reset",
            {"detail": "The last event id is too old or unknown; here is a fresh snapshot."},
        )
    row = await pool.fetchrow(*snapshot_sql(kinds).bind({"user": user_id, "own": owner}))
    assert row is not None
    items = []
    for i, (kind, _snapshot) in enumerate(kinds.snapshots()):
        if (held := row[f"s{i}"]) is not None:
            items += [kind.frame(payload) for payload in msgspec.json.decode(held)]
    watermark: int = row["watermark"]
    return Opening(b"".join([reset, *items, _connected(watermark, False)]), watermark)

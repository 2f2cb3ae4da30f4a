"""Server-Sent Events framing (the WHATWG `text/event-stream` format), as bytes.

A live event is encoded once and the same bytes object is queued to every subscriber of its
user, so a burst costs one encoding per event, not one per subscriber.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..bdr.schemas import bdr_item
from ..exports import schemas as exports
from ..posts import live

PING = b": ping\n\n"


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of HTTP/1.1 chunked transfer coding, as aiohttp would frame it:
    the hub writes live frames straight to the socket of a response that is already chunked."""
    return b"%x\r\n%b\r\n" % (len(data), data)


PING_CHUNK = chunk(PING)


def retry(milliseconds: int) -> bytes:
    return b"retry: %d\n\n" % milliseconds


def event(name: bytes, data: Any, event_id: int | None = None) -> bytes:
    # msgspec never emits a raw newline (they are escaped inside strings), so one `data:`
    # line always carries the whole JSON document.
    head = b"event: " + name + (b"\nid: %d" % event_id if event_id is not None else b"")
    return head + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


def bdr_update(row: Any, event_id: int | None = None) -> bytes:
    """A `bdr_update` from a BDR row (snapshot) or an event payload (live, replayed)."""
    return event(b"bdr_update", bdr_item(row), event_id)


def export_update(payload: Any, event_id: int | None = None) -> bytes:
    """An `export_update` from an export's event payload (`export_event_payload(row)` in the
    database): a few KB whatever the export."""
    return event(EXPORT_UPDATE, exports.export_update(payload), event_id)


def posts_changed(payload: Any, event_id: int | None = None) -> bytes:
    """A `posts_changed` from a posts event's payload (`pmd_posts_changed` in the database)."""
    return event(live.EVENT, live.posts_changed(payload), event_id)


class UnknownKind(Exception):
    """An event of a `kind` this release does not know (a later release's, during a rolling
    deploy): skipped, not an error."""


def update_from_payload(payload: str, event_id: int) -> bytes:
    """The frame of an event read from the events table: a BDR's, an export's or posts' (whose
    payloads say so); a page listens for the kinds it knows and never sees the others. Raises
    UnknownKind for a kind this release does not know."""
    data = msgspec.json.decode(payload)
    if exports.is_export_payload(data):
        return export_update(data, event_id)
    if live.is_posts_payload(data):
        return posts_changed(data, event_id)
    if isinstance(data, dict) and "kind" in data:
        raise UnknownKind(data["kind"])
    return bdr_update(data, event_id)


EXPORT_UPDATE = b"export_update"
_EXPORT_HEAD = b"event: " + EXPORT_UPDATE + b"\n"


def is_export_frame(frame: bytes) -> bool:
    """An export's event: its owner's alone, never sent to a moderator watching the user."""
    return frame.startswith(_EXPORT_HEAD)


TIMEOUT = event(
    b"timeout",
    {"detail": "The access token expired; reconnect with a fresh token (or a new ticket)."},
)

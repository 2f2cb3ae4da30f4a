"""Server-Sent Events framing (the WHATWG `text/event-stream` format), as bytes.

A live event is encoded once and the same bytes object is queued to every subscriber of its
user, so a burst costs one encoding per event, not one per subscriber.
"""

from __future__ import annotations

from typing import Any

import msgspec

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


TIMEOUT = event(
    b"timeout",
    {"detail": "The access token expired; reconnect with a fresh token (or a new ticket)."},
)

"""Server-Sent Events framing (the WHATWG `text/event-stream` format), as bytes.

A live event is encoded once and the same bytes object is queued to every subscriber of its
user, so a burst costs one encoding per event, not one per subscriber.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

# What an EventSource that reconnects by itself waits (plus jitter) after losing the stream: a
# client of a server that restarted is back within a few seconds of its return.
RETRY_MS = 1000
# After a drain the other servers are up already: come back sooner than after an error.
RECONNECT_MS = 500
# Spread reconnects: after a deploy, thousands of clients must not all come back at once.
RETRY_JITTER_MS = 2000

PING = b": ping\n\n"


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of HTTP/1.1 chunked transfer coding, as aiohttp would frame it:
    the hub writes live frames straight to the socket of a response that is already chunked."""
    return b"%x\r\n%b\r\n" % (len(data), data)


PING_CHUNK = chunk(PING)
# The end of a chunked body.
LAST_CHUNK = b"0\r\n\r\n"


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


def reconnect() -> bytes:
    """A stopping server's last words to a stream: come back (elsewhere) after a spread-out
    pause, with Last-Event-ID. Pages that know `reconnect` show it as a reconnect, not an
    error; any other client sees the stream end, which every client already retries."""
    wait = RECONNECT_MS + random.randrange(RETRY_JITTER_MS)
    return retry(wait) + event(
        b"reconnect",
        {"reason": "shutdown", "retry_ms": wait,
         "detail": "This server is restarting; reconnecting to another one."},
    )  # fmt: skip

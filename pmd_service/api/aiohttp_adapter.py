"""The one place that leans on aiohttp beyond its documented API, each use named with the
aiohttp release it was read from (pyproject.toml pins it; tests/unit/test_aiohttp_adapter.py
fails the day aiohttp changes what is relied on, so an upgrade re-reads this module first).

- `direct_framing`: the SSE hub writes each live event to a stream's socket itself, framed
  once for every subscriber (sse/frames.py `chunk`), instead of through each response's
  `write` (an awaited drain a subscriber, a task each: docs/benchmarks.md, "SSE fan-out"). That
  holds while aiohttp's writer, once the response is prepared, keeps nothing buffered between
  its own writes and frames a chunked body as RFC 9112 chunks, so direct chunks interleave
  with its own and its `write_eof` still ends the body.
- `name_the_server`: the `Server` header of the answers aiohttp writes without the app (a
  request it cannot parse) comes from a module global, `web_response.SERVER_SOFTWARE`.
"""

from __future__ import annotations

from aiohttp import hdrs, web, web_response

AIOHTTP_VERSION = "3.14.5"  # the release these uses were read from


def direct_framing(response: web.StreamResponse) -> bool | None:
    """How the hub may frame what it writes to this prepared response's socket itself: as
    chunks (HTTP/1.1), plainly (HTTP/1.0, closed at the end), or not at all (compressed)."""
    if response.compression:
        return None
    return response.headers.get(hdrs.TRANSFER_ENCODING) == "chunked"


def name_the_server(name: str) -> None:
    """Every answer aiohttp writes names the server `name`, with no version of Python or
    aiohttp (the app's own answers set it in on_response_prepare)."""
    web_response.SERVER_SOFTWARE = name  # type: ignore[attr-defined]

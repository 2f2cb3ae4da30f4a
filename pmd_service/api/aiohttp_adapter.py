"""The one place that leans on aiohttp beyond its documented API, each use named with the
aiohttp release it was read from (pyproject.toml pins it; tests/unit/test_aiohttp_adapter.py
fails the day aiohttp changes what is relied on, so an upgrade re-reads this module first).

- `DirectSocket` and `direct_framing`: the SSE hub writes each live event to a stream's socket
  itself, framed once for every subscriber (sse/frames.py `chunk`), instead of through each
  response's `write`, which would wake a task a subscriber. That holds while aiohttp's writer,
  once the response is prepared, keeps nothing buffered between its own writes and frames a
  chunked body as RFC 9112 chunks, so direct chunks interleave with its own and its
  `write_eof` still ends the body.
- `name_the_server`: the `Server` header of the answers aiohttp writes without the app (a
  request it cannot parse) comes from a module global, `web_response.SERVER_SOFTWARE`.
"""

from __future__ import annotations

from asyncio import Transport

from aiohttp import hdrs, web, web_response

AIOHTTP_VERSION = "3.14.5"  # the release these uses were read from


def direct_framing(response: web.StreamResponse) -> bool | None:
    """How the hub may frame what it writes to this prepared response's socket itself: as
    chunks (HTTP/1.1), plainly (HTTP/1.0, closed at the end), or not at all (compressed)."""
    if response.compression:
        return None
    return response.headers.get(hdrs.TRANSFER_ENCODING) == "chunked"


class DirectSocket:
    """The socket under a streamed response, which its owner may also write to itself, between
    the response's own writes, once `take_over` found the body framed in a way it can follow.

    Slotted: a server holds one for each of its thousands of open streams."""

    __slots__ = ("_transport", "chunked")

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        # As `direct_framing` says; None until `take_over`, and then for a compressed body.
        self.chunked: bool | None = None

    def take_over(self, response: web.StreamResponse) -> None:
        """Once `response` is prepared: how what is written here must be framed."""
        self.chunked = direct_framing(response)

    def write(self, data: bytes) -> None:
        """`data` already framed as `chunked` says, after whatever the response wrote before."""
        self._transport.write(data)

    def pending(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self._transport.get_write_buffer_size()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def abort(self) -> None:
        """Close at once, dropping what is not sent."""
        self._transport.abort()


def name_the_server(name: str) -> None:
    """Every answer aiohttp writes names the server `name`, with no version of Python or
    aiohttp (the app's own answers set it in on_response_prepare)."""
    web_response.SERVER_SOFTWARE = name  # type: ignore[attr-defined]

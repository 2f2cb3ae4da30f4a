"""The one place that leans on aiohttp beyond its documented API (tests/unit/test_aiohttp_adapter.py
fails when it changes): writing to a prepared response's socket directly, taking its connection
away from aiohttp, and the `Server` header of answers aiohttp writes without the app."""

from __future__ import annotations

from asyncio import BaseProtocol, Protocol, Transport
from typing import Protocol as Interface
from typing import runtime_checkable

from aiohttp import hdrs, web, web_response

AIOHTTP_VERSION = "3.14.5"  # the release these uses were read from


class DirectSocket:
    """The socket under a streamed response, which its owner may also write to directly."""

    __slots__ = ("_transport", "chunked")

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        # As chunks (HTTP/1.1) or plainly (HTTP/1.0); None until `take_over`, or when compressed.
        self.chunked: bool | None = None

    def take_over(self, response: web.StreamResponse) -> None:
        """Once `response` is prepared: how what is written here must be framed."""
        chunked = response.headers.get(hdrs.TRANSFER_ENCODING) == "chunked"
        self.chunked = None if response.compression else chunked

    def write(self, data: bytes) -> None:
        """`data` already framed as `chunked` says, after whatever the response wrote before."""
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        """Close once what is written has gone out."""
        self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping what is not sent."""
        self._transport.abort()


@runtime_checkable
class Wrapper(Interface):
    """A connection's protocol that wraps aiohttp's (web/connections.py, `Guarded`)."""

    def hand_over(self, protocol: Protocol) -> BaseProtocol | None:
        """Wrap `protocol` from here on instead; returns the one it wrapped."""


def detach(request: web.BaseRequest, protocol: Protocol) -> bool:
    """Give the connection of `request`, whose response is prepared and will write nothing
    more, to `protocol` alone: aiohttp forgets it, so its request, response, task and parser
    are freed while the connection stays open. False if the client has already gone."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return False
    outer = transport.get_protocol()
    if isinstance(outer, Wrapper):
        aiohttp_own = outer.hand_over(protocol)
    else:
        aiohttp_own = outer
        transport.set_protocol(protocol)
    assert isinstance(aiohttp_own, web.RequestHandler)
    # Told the connection is lost, aiohttp closes the transport it still holds: it holds none.
    aiohttp_own.transport = None
    aiohttp_own.connection_lost(None)
    return True


class Detached(web.StreamResponse):
    """A response whose connection was `detach`ed: the end of its body is its new owner's."""

    async def write_eof(self, data: bytes = b"") -> None:
        pass


def name_the_server(name: str) -> None:
    """Every answer aiohttp writes without the app names the server `name`, with no version."""
    web_response.SERVER_SOFTWARE = name  # type: ignore[attr-defined]

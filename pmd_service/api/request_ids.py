"""The request id: taken from a safe `X-Request-ID` or made, echoed, and put on every log line."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler

from ..core.logs import REQUEST_ID, REQUEST_ID_HEADER, request_id_from
from .routing import endpoint_of


def current() -> str:
    """The id of the request (or job) being handled; a fresh one outside of any."""
    return REQUEST_ID.get() or uuid.uuid4().hex


@web.middleware
def request_id_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    endpoint = endpoint_of(request)
    if endpoint is not None and endpoint.long_lived:
        # A stream echoes the id itself: the context variable in each slows a burst's delivery.
        return handler(request)
    return _with_id(request, handler)


async def _with_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    # aiohttp runs each request in a task of its own, so this set stays within the request.
    REQUEST_ID.set(rid)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and the like pass through as exceptions
        exc.headers[REQUEST_ID_HEADER] = rid
        raise
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


async def echo_on_prepare(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """The id on an answer its handler prepared itself, before the middleware gets it back."""
    rid = REQUEST_ID.get()
    if rid is not None and REQUEST_ID_HEADER not in response.headers:
        response.headers[REQUEST_ID_HEADER] = rid

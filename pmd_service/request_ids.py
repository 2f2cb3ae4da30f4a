"""The request id: taken from a safe `X-Request-ID` or made, echoed, and put on every log line.

It follows a BDR: stored in its row, set by the worker for the job's log lines, and sent as the
`X-Request-ID` header of its email.
"""

from __future__ import annotations

import re
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from .logs import REQUEST_ID, request_id_set

HEADER = "X-Request-ID"
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def from_header(value: str | None) -> str:
    """The caller's id when it is a safe token (it lands in logs and headers), else a new one."""
    return value if value and _SAFE.match(value) else uuid.uuid4().hex


def current() -> str:
    """The id of the request (or job) being handled; a fresh one outside of any."""
    return REQUEST_ID.get() or uuid.uuid4().hex


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = from_header(request.headers.get(HEADER))
    with request_id_set(rid):
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects and the like pass through as exceptions
            exc.headers[HEADER] = rid
            raise
    if not response.prepared:  # a stream sets it itself before sending its headers
        response.headers[HEADER] = rid
    return response

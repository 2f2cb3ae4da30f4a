"""The one middleware that turns every error into problem+json (RFC 9457)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import ClientConnectionResetError, web
from aiohttp.typedefs import Handler

from ..api.keys import SETTINGS, STREAM_RESPONSE
from ..api.problem_responses import CLIENT_CLOSED_REQUEST, answer, client_went_away
from ..core.codes import Code
from ..core.logs import REQUEST_ID, REQUEST_ID_HEADER, request_id_from
from ..core.problems import ProblemError, unavailable
from .outage import OUTAGES, RETRY_AFTER_SECONDS, refused_by

log = logging.getLogger(__name__)


_UNAVAILABLE = {"database": Code.DATABASE_UNAVAILABLE, "redis": Code.REDIS_UNAVAILABLE}


def _unavailable(request: web.Request, service: str, exc: Exception) -> ProblemError:
    request.app[OUTAGES].record(service, exc, f"{request.method} {request.path}")
    return unavailable(
        f"The {service} is not taking connections or not answering right now (overloaded, "
        f"restarting or cut off); retry in {RETRY_AFTER_SECONDS} seconds.",
        f"{service}-unavailable",
        RETRY_AFTER_SECONDS,
        code=_UNAVAILABLE[service],
    )


# aiohttp's own refusals; any other is a request it could not read.
_HTTP_CODES = {404: Code.NOT_FOUND, 405: Code.METHOD_NOT_ALLOWED, 413: Code.BODY_TOO_LARGE}


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ProblemError:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
    status = exc.status
    if status == 404:
        detail = f"There is no resource at {request.path}; see /openapi.json for the API."
    elif status == 405:
        allowed = exc.headers.get("Allow", "")
        detail = f"{request.method} is not allowed on {request.path}; use one of: {allowed}."
    elif status == 413:
        limit = request.app[SETTINGS].max_body_bytes
        detail = f"The request body is larger than the {limit}-byte limit; send less data."
    else:
        detail = exc.text or exc.reason
        if detail.startswith(f"{status}:"):
            detail = exc.reason
    return ProblemError(
        status,
        f"http-{status}",
        exc.reason,
        detail,
        headers=headers,
        code=_HTTP_CODES.get(status, Code.BAD_REQUEST),
        details={"limit_bytes": request.app[SETTINGS].max_body_bytes} if status == 413 else {},
    )


def _adopt_request_id(request: web.Request) -> None:
    """A failed stream's request id: its response's, else the client's, else a new one."""
    if REQUEST_ID.get() is not None:
        return
    started: web.StreamResponse | None = request.get(STREAM_RESPONSE)
    sent = started.headers.get(REQUEST_ID_HEADER) if started is not None else None
    REQUEST_ID.set(sent or request_id_from(request.headers.get(REQUEST_ID_HEADER)))


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except asyncio.CancelledError:
        # Its client left, or the server shuts down: the client never gets the whole answer.
        if request.transport is None or request.transport.is_closing():
            _adopt_request_id(request)
            client_went_away(request, "went away; its handler was cancelled")
        raise
    except Exception as exc:
        _adopt_request_id(request)
        started: web.StreamResponse | None = request.get(STREAM_RESPONSE)
        if started is not None and started.prepared:
            # Never touch a response already streaming: the client sees the stream end.
            if isinstance(exc, ConnectionError):
                client_went_away(request, f"went away mid-body ({type(exc).__name__})")
            elif not isinstance(exc, ProblemError | web.HTTPException):
                log.exception("stream %s %s failed", request.method, request.path)
            return started
        if isinstance(exc, ClientConnectionResetError):
            # The client left before the answer's first bytes: never counted as an outage.
            client_went_away(request, f"went away before the answer ({type(exc).__name__})")
            return web.Response(status=CLIENT_CLOSED_REQUEST)
        if isinstance(exc, ProblemError):
            return answer(exc)
        if isinstance(exc, web.HTTPException):
            if exc.status < 400:
                raise
            return answer(_from_http_exception(request, exc))
        if (service := refused_by(exc)) is not None:
            return answer(_unavailable(request, service, exc))
        log.exception("unhandled error in %s %s", request.method, request.path)
        return answer(
            ProblemError(
                500,
                "internal",
                "Internal Server Error",
                "The server failed to handle this request; it has been logged. Try again later.",
                code=Code.INTERNAL_ERROR,
            )
        )

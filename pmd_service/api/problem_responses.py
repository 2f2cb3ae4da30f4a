"""A problem as an HTTP answer (problem+json, RFC 9457), and a client that left mid-answer."""

from __future__ import annotations

import logging

import msgspec
from aiohttp import web

from ..core.problems import TYPE_BASE, Problem, ProblemError
from .keys import COUNTED_STATUS

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# nginx's status for a client that closed the connection before the response was complete.
CLIENT_CLOSED_REQUEST = 499


def client_went_away(request: web.Request, detail: str) -> None:
    """A client that left (or stopped reading) mid-body: one line, counted as 499."""
    request[COUNTED_STATUS] = CLIENT_CLOSED_REQUEST
    log.info("%s %s: the client %s", request.method, request.path, detail)


def answer(exc: ProblemError) -> web.Response:
    body = msgspec.to_builtins(
        Problem(
            TYPE_BASE + exc.slug,
            exc.title,
            exc.status,
            exc.detail,
            exc.code,
            exc.details,
            exc.errors,
        )
    )
    if exc.extra:
        body.update(exc.extra)
    response = web.Response(
        status=exc.status,
        body=msgspec.json.encode(body),
        content_type=PROBLEM_JSON,
        headers=exc.headers,
    )
    if exc.status == 408:
        # The rest of the body is not waited for: aiohttp would read it for up to 10 s more.
        response.force_close()
    return response

"""The declaration of one endpoint: route, handler, authentication, query and OpenAPI entry."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp.typedefs import Handler

from ..core.codes import Code


class Auth(enum.Enum):
    PUBLIC = "public"  # health, readiness, the OpenAPI document, metrics
    BEARER = "bearer"  # `Authorization: Bearer`; the handler finds request[PRINCIPAL]
    # Bearer, or a `ticket` its query struct declares (a download the browser saves).
    BEARER_OR_TICKET = "bearer_or_ticket"
    OWN = "own"  # the handler authenticates itself (the SSE stream also takes a ticket)


# What a request may answer for the ticket it came with (BEARER_OR_TICKET's, and the stream's).
TICKET_CODES = (
    Code.TICKET_INVALID,
    Code.TICKET_WRONG_DOWNLOAD,
    Code.TARGET_MISMATCH,
    Code.TICKETS_UNAVAILABLE,
)


@dataclass(frozen=True)
class Param:
    """A header or path parameter (query parameters come from the endpoint's `query` struct)."""

    name: str
    schema: dict[str, Any]
    description: str
    location: str = "header"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    auth: Auth = Auth.BEARER
    # Query parameters as a struct (field types and Meta give parsing and the document).
    query: type[msgspec.Struct] | None = None
    request: type | None = None
    response: type | None = None
    ok_status: int = 200
    ok_description: str = "OK"
    response_media: str = "application/json"
    problems: tuple[int, ...] = ()
    # Its own problems' codes; those of its kind (authentication, body, query) are added.
    codes: tuple[Code, ...] = ()
    # What a problem status means here, where the document's general wording says too little.
    problem_notes: dict[int, str] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    # Other non-problem answers: (status, description, media type of the body or None).
    other_responses: tuple[tuple[int, str, str | None], ...] = ()
    other_schemas: dict[int, type] = field(default_factory=dict)
    # Other answers' headers, by a status the endpoint declares.
    status_headers: dict[int, dict[str, str]] = field(default_factory=dict)
    allow_head: bool = True  # GET only
    # Open for hours, thousands at once (SSE): kept free of per-request context (request_ids).
    long_lived: bool = False
    # A stream's event data shapes: in the document's components, as its summary names them.
    events: tuple[type, ...] = ()

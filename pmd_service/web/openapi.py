"""The OpenAPI 3.1 document, generated from the same msgspec structs the handlers decode with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from aiohttp import web

from ..api.declaration import Auth, Endpoint, Param
from ..api.keys import OPENAPI_DOC
from ..api.problem_responses import PROBLEM_JSON
from ..core.problems import Problem

REF_TEMPLATE = "#/components/schemas/{name}"


TARGET_SQID = Param(
    "target_sqid",
    {"type": "string", "maxLength": 16},
    "Moderators only: act on this user's posts instead of your own.",
    location="query",
)
AUTH_PROBLEMS = (401, 403, 404)
# Every 429 and 503 the service answers says when to come back (a limit that resets, a
# dependency that refuses, a server that drains).
RETRY_AFTER_STATUSES = (429, 503)
RETRY_AFTER = {
    "description": "Seconds to wait before retrying",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
# Headers whose values have a shape a client may rely on; any other is just a string.
_HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Content-Length": {"type": "string", "pattern": "^[0-9]+$"},
    # `bytes 0-1023/4096` (a 206), or `bytes */4096` (a 416: the size, no range).
    "Content-Range": {"type": "string", "pattern": r"^bytes ([0-9]+-[0-9]+|\*)/[0-9]+$"},
}
DATABASE_REFUSES = "the database is not taking connections (overloaded, restarting or unreachable)"


def _query_params(struct: type[msgspec.Struct]) -> list[Param]:
    """One parameter per field of the endpoint's query struct, as msgspec describes it."""
    schema = msgspec.json.schema(struct)
    definition = schema["$defs"][struct.__name__] if "$defs" in schema else schema
    params = []
    for name, prop in definition["properties"].items():
        prop = dict(prop)
        if "anyOf" in prop:  # `X | None`: absent means None; present, it is an X
            prop = {**next(p for p in prop.pop("anyOf") if p.get("type") != "null"), **prop}
        description = prop.pop("description", "")
        if prop.get("default", ...) is None:
            del prop["default"]
        params.append(Param(name, prop, description, location="query"))
    return params


def build_document(endpoints: Iterable[Endpoint], version: str) -> dict[str, Any]:
    operations = list(endpoints)
    types: list[Any] = [Problem]
    for op in operations:
        types += [t for t in (op.request, op.response) if t is not None]
        types += op.events
        types += [t for t in op.other_schemas.values() if t not in types]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    by_type = dict(zip(types, schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        params = (_query_params(op.query) if op.query is not None else []) + list(op.params)
        responses = _responses(op, by_type, has_params=bool(params))
        authenticated = op.auth is not Auth.PUBLIC
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": responses,
        }
        if authenticated:
            params.append(TARGET_SQID)
        if params:
            entry["parameters"] = [
                {
                    "name": p.name,
                    "in": p.location,
                    "required": p.required or p.location == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in params
            ]
        if op.request is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": by_type[op.request]}},
            }
        if authenticated:
            entry["security"] = [{"bearer": []}]
        paths.setdefault(op.path, {})[op.method] = entry

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pmd-service",
            "version": version,
            "description": "Post Management Dashboard: bulk post actions and ZIP downloads "
            "with live status over Server-Sent Events.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _responses(
    op: Endpoint, by_type: dict[Any, dict[str, Any]], *, has_params: bool
) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": op.ok_description}
    if op.response is not None:
        ok["content"] = {op.response_media: {"schema": by_type[op.response]}}
    elif op.response_media != "application/json" or op.operation_id in ("openapi", "apiOpenapi"):
        ok["content"] = {op.response_media: {"schema": {}}}
    if op.headers:
        ok["headers"] = _headers(op.headers)
    responses: dict[str, Any] = {str(op.ok_status): ok}
    for status, description, media in op.other_responses:
        other: dict[str, Any] = {"description": description}
        if media is not None:
            shape = op.other_schemas.get(status)
            other["content"] = {media: {"schema": by_type[shape] if shape else {}}}
        responses[str(status)] = other
    for status in sorted(_problem_statuses(op, has_params=has_params)):
        responses[str(status)] = {
            "description": _problem_description(op, status),
            "content": {PROBLEM_JSON: {"schema": by_type[Problem]}},
        }
        if status in RETRY_AFTER_STATUSES:
            responses[str(status)]["headers"] = {"Retry-After": RETRY_AFTER}
    for status, described in op.status_headers.items():
        if str(status) not in responses:  # at start-up, not in a client generated from it
            raise ValueError(f"{op.operation_id}: headers for {status}, which it never answers")
        responses[str(status)].setdefault("headers", {}).update(_headers(described))
    return responses


def _headers(described: dict[str, str]) -> dict[str, Any]:
    return {
        name: {"description": text, "schema": _HEADER_SCHEMAS.get(name, {"type": "string"})}
        for name, text in described.items()
    }


def _reads_database(op: Endpoint) -> bool:
    """Authentication reads the caller's row from PostgreSQL (a token's user, a ticket's)
    before any handler runs, the stream's own included: while the database refuses
    connections, every authenticated endpoint is answered 503 with Retry-After
    (web/problem_middleware.py), whatever its handler would have done."""
    return op.auth is not Auth.PUBLIC


def _problem_statuses(op: Endpoint, *, has_params: bool) -> set[int]:
    statuses = set(op.problems)
    if op.auth is not Auth.PUBLIC:
        # 404 and 400 too: an unknown `target_sqid`, or one holding a NUL (every authenticated
        # endpoint takes one).
        statuses |= {*AUTH_PROBLEMS, 400}
    if _reads_database(op):
        statuses.add(503)
    if op.request is not None:
        statuses |= {400, 408, 413, 415, 422}
    if has_params:
        statuses.add(400)
    return statuses


def _problem_description(op: Endpoint, status: int) -> str:
    own = op.problem_notes.get(status) or _PROBLEM_DESCRIPTIONS.get(status, "Problem")
    if status != 503 or not _reads_database(op):
        return own
    if 503 not in op.problems:
        return f"Unavailable while {DATABASE_REFUSES}; see Retry-After"
    return f"{own}. Also while {DATABASE_REFUSES}"


_PROBLEM_DESCRIPTIONS = {
    400: "Bad request: malformed JSON, invalid query or ineligible ids",
    401: "Missing, invalid or expired token",
    403: "Not allowed (banned, not a moderator, or an owner target)",
    404: "Not found",
    409: "Not ready yet",
    410: "Expired",
    408: "The body did not arrive within BODY_TIMEOUT_SECONDS; the connection is closed",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Body does not match the schema",
    429: "Limit reached; see Retry-After",
    503: "Unavailable for now; see Retry-After",
}


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(
        request.app[OPENAPI_DOC], dumps=lambda o: msgspec.json.encode(o).decode()
    )


ENDPOINTS = (
    Endpoint(
        "get",
        "/openapi.json",
        openapi_handler,
        "openapi",
        "This document",
        "operations",
        auth=Auth.PUBLIC,
        ok_description="The OpenAPI 3.1 document",
    ),
    # Where a site's proxy sends this service's requests (only /api/pmd/*): the reference at
    # /api/pmd/docs reads it from here.
    Endpoint(
        "get",
        "/api/pmd/openapi.json",
        openapi_handler,
        "apiOpenapi",
        "This document, under /api/pmd/",
        "operations",
        auth=Auth.PUBLIC,
        ok_description="The OpenAPI 3.1 document",
    ),
)

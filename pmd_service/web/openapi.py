"""The OpenAPI 3.1 document, generated from the same msgspec structs the handlers decode with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from aiohttp import web

from ..api.declaration import TICKET_CODES, Auth, Endpoint, Param
from ..api.keys import OPENAPI_DOC
from ..api.problem_responses import PROBLEM_JSON
from ..api.routing import once_keys, query_fields, query_list, query_scalar
from ..core.codes import HOST_PROBLEM_CODES, TABLE, Code
from ..core.problems import Problem

TARGET_SQID = Param(
    "target_sqid",
    {"type": "string", "maxLength": 16},
    "Moderators only: act on this user's posts instead of your own.",
    location="query",
)
# What any authenticated endpoint may answer (it reads the caller's row and `target_sqid`).
AUTH_CODES = (
    Code.TOKEN_MISSING,
    Code.TOKEN_INVALID,
    Code.TOKEN_EXPIRED,
    Code.ACCOUNT_DEACTIVATED,
    Code.ACCOUNT_BANNED,
    Code.FORBIDDEN_ROLE,
    Code.OWNER_PROTECTED,
    Code.MODERATOR_PROTECTED,
    Code.TARGET_NOT_FOUND,
    Code.INVALID_TEXT,
    Code.DATABASE_UNAVAILABLE,
)
# What any JSON body may be refused for (api/validation.py, the size and time limits).
BODY_CODES = (
    Code.MALFORMED_JSON,
    Code.DUPLICATE_KEY,
    Code.INVALID_TEXT,
    Code.VALIDATION_FAILED,
    Code.UNSUPPORTED_MEDIA_TYPE,
    Code.BODY_TOO_LARGE,
    Code.BODY_TIMEOUT,
)
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
DATABASE_REFUSES = (
    "the database is not taking connections or not answering (overloaded, restarting or "
    "unreachable)"
)


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
    ref_template = "#/components/schemas/{name}"
    schemas, components = msgspec.json.schema_components(types, ref_template=ref_template)
    by_type = dict(zip(types, schemas, strict=True))
    problem = components[Problem.__name__]["properties"]
    problem["code"] = {
        "type": "string",
        "enum": [str(c) for c in HOST_PROBLEM_CODES],
        "description": "What the host's app translates: the host's own code for the "
        "situation, else its code for the status; the table of codes is in docs/errors.md",
    }
    problem["details"] = {
        "type": "object",
        "required": ["reason"],
        "properties": {
            "reason": {
                "type": "string",
                "description": "This service's finer name for the situation: stable, never reused",
            }
        },
        "description": "The reason, and the numbers and ids a client needs",
    }

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        params = (_query_params(op.query) if op.query is not None else []) + list(op.params)
        authenticated = op.auth is not Auth.PUBLIC
        if authenticated:
            params.append(TARGET_SQID)
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": _responses(op, by_type),
        }
        if params:
            entry["parameters"] = [
                {
                    "name": p.name,
                    "in": p.location,
                    "required": p.location == "path",
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


def _responses(op: Endpoint, by_type: dict[Any, dict[str, Any]]) -> dict[str, Any]:
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
    by_status: dict[int, list[Code]] = {}
    for code in problem_codes(op):
        by_status.setdefault(TABLE[code].status or 0, []).append(code)
    for status in sorted(set(op.problems) | by_status.keys()):
        if status not in by_status:  # at start-up: every problem answer names its codes
            raise ValueError(f"{op.operation_id}: {status} has no code (Endpoint.codes)")
        responses[str(status)] = {
            "description": _problem_description(op, status),
            "content": {
                PROBLEM_JSON: {"schema": _problem_schema(by_type[Problem], by_status[status])}
            },
        }
        if status in (429, 503):  # each says when to come back
            responses[str(status)]["headers"] = {"Retry-After": RETRY_AFTER}
    for status, described in op.status_headers.items():
        if str(status) not in responses:  # at start-up, not in a client generated from it
            raise ValueError(f"{op.operation_id}: headers for {status}, which it never answers")
        responses[str(status)].setdefault("headers", {}).update(_headers(described))
    return responses


def problem_codes(op: Endpoint) -> list[Code]:
    """Every code the endpoint's problems may carry: its own, and those of its kind."""
    codes = list(op.codes)
    if op.auth is not Auth.PUBLIC:
        codes += AUTH_CODES
    if op.auth is Auth.BEARER_OR_TICKET:
        codes += TICKET_CODES
    if op.request is not None:
        codes += BODY_CODES
    # A query parameter read as more than text can be invalid.
    if op.query is not None and any(
        not isinstance(query_scalar(f.type), msgspec.inspect.StrType) or query_list(f.type)
        for f in query_fields(op.query)
    ):
        codes.append(Code.INVALID_QUERY)
    if once_keys(op):  # a query parameter that takes one value, given twice (api/routing.py)
        codes.append(Code.DUPLICATE_KEY)
    return list(dict.fromkeys(codes))


def _problem_schema(problem: dict[str, Any], codes: list[Code]) -> dict[str, Any]:
    """The problem, with the codes this answer carries and each one's `details` fields."""
    shapes = [
        {
            "properties": {
                "code": {"const": str(TABLE[c].code)},
                "details": TABLE[c].details_schema(c),
            }
        }
        for c in codes
    ]
    return {"allOf": [problem, shapes[0] if len(shapes) == 1 else {"oneOf": shapes}]}


def _headers(described: dict[str, str]) -> dict[str, Any]:
    return {
        name: {"description": text, "schema": _HEADER_SCHEMAS.get(name, {"type": "string"})}
        for name, text in described.items()
    }


def _problem_description(op: Endpoint, status: int) -> str:
    own = op.problem_notes.get(status) or _PROBLEM_DESCRIPTIONS.get(status, "Problem")
    if status != 503 or op.auth is Auth.PUBLIC:
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


ENDPOINTS = tuple(
    Endpoint(
        "get",
        path,
        openapi_handler,
        operation_id,
        summary,
        "operations",
        auth=Auth.PUBLIC,
        ok_description="The OpenAPI 3.1 document",
    )
    for path, operation_id, summary in (
        ("/openapi.json", "openapi", "This document"),
        # Where a site's proxy sends this service's requests: /api/pmd/docs reads it.
        ("/api/pmd/openapi.json", "apiOpenapi", "This document, under /api/pmd/"),
    )
)

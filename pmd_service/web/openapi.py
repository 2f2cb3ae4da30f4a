"""The OpenAPI 3.1 document, generated from the same msgspec structs the handlers decode with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from ..problems import Problem
from .keys import OPENAPI_DOC
from .problems import PROBLEM_JSON

REF_TEMPLATE = "#/components/schemas/{name}"


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str
    location: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    ok_status: int = 200
    ok_description: str = "OK"
    request: type | None = None
    response: type | None = None
    response_media: str = "application/json"
    problems: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    auth: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    # Other non-problem answers: (status, description, media type of the body or None).
    other_responses: tuple[tuple[int, str, str | None], ...] = ()


TARGET_SQID = Param(
    "target_sqid",
    {"type": "string", "maxLength": 16},
    "Moderators only: act on this user's posts instead of your own.",
)
AUTH_PROBLEMS = (401, 403, 404)


class HealthStatus(msgspec.Struct):
    status: str


class ReadyStatus(msgspec.Struct):
    status: str
    checks: dict[str, str]


HEALTH_OPERATIONS = (
    Operation("get", "/healthz", "healthz", "Liveness", "operations", response=HealthStatus, auth=False),
    Operation(
        "get", "/readyz", "readyz", "Readiness: database and Redis reachable", "operations",
        response=ReadyStatus, problems=(503,), auth=False,
    ),
    Operation(
        "get", "/openapi.json", "openapi", "This document", "operations",
        response=None, auth=False, ok_description="The OpenAPI 3.1 document",
    ),
    Operation(
        "get", "/metrics", "metrics", "Prometheus metrics of this server process", "operations",
        response=None, response_media="text/plain", auth=False,
        ok_description="Prometheus text exposition format",
    ),
)  # fmt: skip


def build_document(operations: Iterable[Operation], version: str) -> dict[str, Any]:
    operations = list(operations)
    types: list[Any] = [Problem]
    for op in operations:
        types += [t for t in (op.request, op.response) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF_TEMPLATE)
    by_type = dict(zip(types, schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {"description": op.ok_description}
        if op.response is not None:
            ok["content"] = {op.response_media: {"schema": by_type[op.response]}}
        elif op.response_media != "application/json" or op.operation_id == "openapi":
            ok["content"] = {op.response_media: {"schema": {}}}
        if op.headers:
            ok["headers"] = {
                name: {"description": desc, "schema": {"type": "string"}}
                for name, desc in op.headers.items()
            }
        responses[str(op.ok_status)] = ok
        for status, description, media in op.other_responses:
            other: dict[str, Any] = {"description": description}
            if media is not None:
                other["content"] = {media: {"schema": {}}}
            responses[str(status)] = other
        problem_statuses = set(op.problems)
        if op.auth:
            # 404 too: an unknown `target_sqid` (every authenticated endpoint takes one).
            problem_statuses |= set(AUTH_PROBLEMS)
        if op.request is not None:
            problem_statuses |= {400, 413, 415, 422}
        if op.params:
            problem_statuses.add(400)
        for status in sorted(problem_statuses):
            responses[str(status)] = {
                "description": _PROBLEM_DESCRIPTIONS.get(status, "Problem"),
                "content": {PROBLEM_JSON: {"schema": by_type[Problem]}},
            }
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": responses,
        }
        params = list(op.params)
        if op.auth and op.path.startswith("/api/pmd/"):
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
        if op.auth:
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


_PROBLEM_DESCRIPTIONS = {
    400: "Bad request: malformed JSON, invalid query or ineligible ids",
    401: "Missing, invalid or expired token",
    403: "Not allowed (banned, not a moderator, or an owner target)",
    404: "Not found",
    409: "Not ready yet",
    410: "Expired",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Body does not match the schema",
    429: "Limit reached; see Retry-After",
    503: "Not ready",
}


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(
        request.app[OPENAPI_DOC], dumps=lambda o: msgspec.json.encode(o).decode()
    )

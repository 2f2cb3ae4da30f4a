"""Request parsing: JSON bodies into msgspec structs and path ids, with actionable 4xx (query
parameters: endpoints.parse_query)."""

from __future__ import annotations

import re
import uuid
from typing import TypeVar

import msgspec
from aiohttp import web

from ..core.problems import FieldError, ProblemError, bad_request, validation_error

T = TypeVar("T")

_NAMED_FIELD_RE = re.compile(r"(?:missing required|contains unknown) field `([^`]*)`")
_PATH_RE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def _field_error(exc: msgspec.ValidationError) -> FieldError:
    match = _PATH_RE.match(str(exc))
    assert match is not None  # the pattern matches any string
    path = (match.group("path") or "").lstrip(".")
    message = match.group("msg")
    named = _NAMED_FIELD_RE.search(message)
    if named is not None:  # "Object missing required field `x`": the field is the subject
        path = f"{path}.{named[1]}" if path else named[1]
    return FieldError(field=path or "body", message=message)


def decode_json(body: bytes, type_: type[T]) -> T:
    if not body.strip():
        raise bad_request("The request body is empty; send a JSON object.", slug="malformed-json")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        error = _field_error(exc)
        raise validation_error(
            f"Invalid value for `{error.field}`: {error.message}.", [error]
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise bad_request(
            f"The request body is not valid JSON ({exc}); send a UTF-8 JSON object.",
            slug="malformed-json",
        ) from None


async def read_json(request: web.Request, type_: type[T]) -> T:
    ctype = request.content_type
    if ctype != "application/json" and not (
        ctype.startswith("application/") and ctype.endswith("+json")
    ):
        raise ProblemError(
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            f"The request body must be JSON: send `Content-Type: application/json` (got {ctype!r}).",
        )
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        # Refuse a declared oversize body at once: reading first would wait for bytes a client
        # may never send (the limit is otherwise only enforced as the body arrives).
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    return decode_json(await request.read(), type_)


def path_uuid(request: web.Request, name: str = "id") -> uuid.UUID:
    raw = request.match_info[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise bad_request(
            f"`{raw[:60]}` is not a valid request id; ids are UUIDs like "
            "3f2b8c1e-0d4a-4c7e-9a51-6b2f0e8d7c93.",
            slug="invalid-id",
        ) from None

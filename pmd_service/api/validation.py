"""Request parsing: JSON bodies and path ids, with actionable 4xx, and the NUL check on text."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from functools import cache
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from ..core.codes import Code
from ..core.problems import FieldError, ProblemError, bad_request, validation_error
from .keys import SETTINGS

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


@cache
def _quoted_keys(type_: type[msgspec.Struct]) -> tuple[bytes, ...]:
    return tuple(b'"%s"' % name.encode() for name in type_.__struct_encode_fields__)


def _refuse_pair(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise bad_request(
                f"The key `{key[:40]}` appears more than once in the body; send each key once "
                "(a parser reading the first one would act on a different request).",
                slug="duplicate-key",
                extra={"key": key[:40]},
                code=Code.DUPLICATE_KEY,
            )
        seen.add(key)
    return dict(pairs)


def refuse_repeated_keys(body: bytes, type_: type[msgspec.Struct]) -> None:
    """400 naming the key if a body, already decoded into the flat struct `type_`, repeats one
    (msgspec keeps the last, a proxy may read the first)."""
    if b"\\" not in body and all(body.count(key) < 2 for key in _quoted_keys(type_)):
        return
    try:
        json.loads(body, object_pairs_hook=_refuse_pair)
    except (ValueError, RecursionError):  # msgspec accepted it; nothing repeated was found
        return


def refuse_nul(value: object, path: str = "") -> None:
    """400 naming the first text in `value` holding U+0000, which PostgreSQL text cannot store."""
    if isinstance(value, str) and "\x00" in value:
        field = path or "body"
        raise bad_request(
            f"`{field}` contains a NUL character (U+0000), which no text of the site can "
            "hold; remove it and send the request again.",
            slug="invalid-text",
            errors=[FieldError(field=field, message="contains a NUL character (U+0000)")],
            code=Code.INVALID_TEXT,
        )
    if isinstance(value, msgspec.Struct):
        for name, key in zip(value.__struct_fields__, value.__struct_encode_fields__, strict=True):
            refuse_nul(getattr(value, name), f"{path}.{key}" if path else key)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            refuse_nul(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key, path)
            refuse_nul(item, f"{path}.{key}" if path else str(key))


def decode_json(body: bytes, type_: type[T]) -> T:
    if not body.strip():
        raise bad_request(
            "The request body is empty; send a JSON object.",
            slug="malformed-json",
            code=Code.MALFORMED_JSON,
        )
    try:
        decoded = msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        error = _field_error(exc)
        raise validation_error(
            f"Invalid value for `{error.field}`: {error.message}.", [error]
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise bad_request(
            f"The request body is not valid JSON ({exc}); send a UTF-8 JSON object.",
            slug="malformed-json",
            code=Code.MALFORMED_JSON,
        ) from None
    if isinstance(decoded, msgspec.Struct):
        refuse_repeated_keys(body, type(decoded))
    if b"\\u0000" in body:  # JSON can carry U+0000 only escaped, so no other body holds one
        refuse_nul(decoded)
    return decoded


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
            code=Code.UNSUPPORTED_MEDIA_TYPE,
        )
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        # At once: reading first would wait for bytes a client may never send.
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    timeout = request.app[SETTINGS].body_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            body = await request.read()
    except TimeoutError:
        # Answered, and the connection closed: a trickling body would hold its handler.
        raise ProblemError(
            408,
            "request-timeout",
            "Request Timeout",
            f"The request body did not arrive within {timeout:g} s; send it again.",
            code=Code.BODY_TIMEOUT,
            details={"timeout_seconds": round(timeout)},
        ) from None
    return decode_json(body, type_)


def path_uuid(request: web.Request) -> uuid.UUID:
    return parse_uuid(request.match_info["id"])


def parse_uuid(raw: str) -> uuid.UUID:
    """A request id from a path or query; 400 when it is not one."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise bad_request(
            f"`{raw[:60]}` is not a valid request id; ids are UUIDs like "
            "3f2b8c1e-0d4a-4c7e-9a51-6b2f0e8d7c93.",
            slug="invalid-id",
            code=Code.INVALID_ID,
        ) from None

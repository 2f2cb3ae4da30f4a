"""JSON responses encoded with msgspec (structs, datetimes and UUIDs included)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from aiohttp import web


def json_response(
    value: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value),
        status=status,
        content_type="application/json",
        headers=headers,
    )

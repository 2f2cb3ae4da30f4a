"""CORS for a dashboard page served from another origin than the API (off by default)."""

from __future__ import annotations

import aiohttp_cors
from aiohttp import web

EXPOSED = (
    "Location",
    "Retry-After",
    "X-Request-ID",
    "Content-Disposition",
    "ETag",
    "Last-Modified",
)
ALLOWED = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Last-Event-ID",
    "Range",
    "If-Range",
    "X-Request-ID",
    "Cache-Control",
)
PREFLIGHT_MAX_AGE = 600


def setup_cors(app: web.Application, origins: tuple[str, ...]) -> None:
    """Allow `origins` on every route under /api/pmd/; call after all routes are added."""
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=True,
        expose_headers=EXPOSED,
        allow_headers=ALLOWED,
        allow_methods=("GET", "HEAD", "POST", "DELETE"),
        max_age=PREFLIGHT_MAX_AGE,
    )
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(origins, options))
    for route in list(app.router.routes()):
        info = route.resource.get_info() if route.resource is not None else {}
        path = str(info.get("path") or info.get("formatter") or "")
        if path.startswith("/api/pmd/") and route.method != "OPTIONS":
            cors.add(route)

"""CORS for a dashboard page served from another origin than the API (off by default).

The host's page calls `{NEXT_PUBLIC_API_BASE_URL}/api/pmd/*` with a Bearer header (and may send
cookies): browsers then preflight every call. aiohttp-cors answers the preflights and adds the
`Access-Control-*` headers to every answer of the API's routes, problems included.
"""

from __future__ import annotations

import aiohttp_cors
from aiohttp import web

# What the pages read from answers: the new request's URL, a 429's wait, the id to quote in
# a support request, and the download's name and validators.
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

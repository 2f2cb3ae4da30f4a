"""The API reference at `/docs`: `/openapi.json` rendered in the browser by Swagger UI.

The viewer is two pinned files shipped in the package (static/vendor/: its README says which
version, where it came from and how to update it; SHA256SUMS holds their digests), served from
this origin like the dashboard's own files. The page asks nothing of any other origin, and its
policy allows nothing else: Swagger UI needs no inline style, no worker, no font and no frame.

`/docs` is declared as an endpoint, so the document it renders describes it too: it is a route
of this service that anyone may call, as `/openapi.json` is.
"""

from __future__ import annotations

import base64
import hashlib
import json

import msgspec
from aiohttp import web

from ..core.settings import Settings
from .declaration import Auth, Endpoint

# Pinned in static/vendor/ (README.md, SHA256SUMS). The version in the files' URLs makes a
# browser fetch the new files after an update instead of older ones it cached.
SWAGGER_UI_VERSION = "5.35.0"
VENDOR_URL = "/static/pmd/vendor"
SPEC_URL = "/openapi.json"

# The page's one script of its own, allowed by its digest (no 'unsafe-inline'). validatorUrl
# null: otherwise Swagger UI shows a badge fetched from a validator on another origin.
# "Try it out" sends its requests to this origin (the document names no `servers`).
INIT_SCRIPT = (
    "window.ui = SwaggerUIBundle("
    + json.dumps(
        {"url": SPEC_URL, "dom_id": "#reference", "validatorUrl": None, "deepLinking": True}
    )
    + ");"
)
INIT_DIGEST = base64.b64encode(hashlib.sha256(INIT_SCRIPT.encode()).digest()).decode()

# img-src data: the icons swagger-ui.css draws as `data:` SVG images.
POLICY = (
    f"default-src 'none'; script-src 'self' 'sha256-{INIT_DIGEST}'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pmd-service API reference</title>
<link rel="stylesheet" href="{VENDOR_URL}/swagger-ui.css?v={SWAGGER_UI_VERSION}">
</head>
<body>
<main id="reference"></main>
<script src="{VENDOR_URL}/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"></script>
<script>{INIT_SCRIPT}</script>
</body>
</html>
"""


def public_base(settings: Settings) -> str:
    """Where a person reaches this service: BASE_URL when it is set (to anything but its
    default), else http://HOST:PORT."""
    default = next(f.default for f in msgspec.structs.fields(Settings) if f.name == "base_url")
    if settings.base_url != default:
        return settings.base_url
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def docs_url(settings: Settings) -> str:
    return public_base(settings) + "/docs"


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", headers=HEADERS)


ENDPOINTS = (
    Endpoint("get", "/docs", docs, "docs", "This document, as a page to read", "operations",
             auth=Auth.PUBLIC, response_media="text/html",
             ok_description="The API reference: a page that renders /openapi.json",
             headers={
                 "Content-Security-Policy": "This origin only: its scripts (and the page's own "
                 "one line, by its digest), styles, images and requests; no frame, form or base",
                 "Referrer-Policy": "no-referrer",
                 "X-Content-Type-Options": "nosniff",
                 "Cache-Control": "no-cache: revalidated, so an update's page is seen at once",
             }),
)  # fmt: skip

"""The API reference at `/docs` and `/api/pmd/docs`: the OpenAPI document rendered by Swagger UI,
two pinned files in static/vendor/ served from this origin."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from ..api.declaration import Auth, Endpoint
from ..core.settings import Settings
from .pages import PAGE_HEADERS

# In the files' URLs, so a browser fetches an update's files instead of cached ones.
SWAGGER_UI_VERSION = "5.35.0"
VENDOR_DIR = Path(__file__).parent / "static" / "vendor"
VENDOR_URL = "/static/pmd/vendor"
SPEC_URL = "/openapi.json"
# Under the prefix a site's proxy sends to this service.
API_DOCS_PATH = "/api/pmd/docs"
API_VENDOR_URL = API_DOCS_PATH + "/vendor"
API_SPEC_URL = "/api/pmd/openapi.json"

HEADERS_DOC = {
    "Content-Security-Policy": "This origin only: its scripts (and the page's own "
    "one line, by its digest), styles, images and requests; no frame, form or base",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache: revalidated, so an update's page is seen at once",
}


def _reference(spec_url: str, vendor_url: str) -> Handler:
    """The reference page reading `spec_url`, with the viewer's files at `vendor_url`."""
    # The page's one script, allowed by its digest; no validator badge from another origin.
    options = {"url": spec_url, "dom_id": "#reference", "validatorUrl": None, "deepLinking": True}
    script = "window.ui = SwaggerUIBundle(" + json.dumps(options) + ");"
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    # img-src data: the icons swagger-ui.css draws as `data:` SVG images.
    policy = (
        f"default-src 'none'; script-src 'self' 'sha256-{digest}'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )
    answer_headers = {**PAGE_HEADERS, "Content-Security-Policy": policy}
    text = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pmd-service API reference</title>
<link rel="stylesheet" href="{vendor_url}/swagger-ui.css?v={SWAGGER_UI_VERSION}">
</head>
<body>
<main id="reference"></main>
<script src="{vendor_url}/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}"></script>
<script>{script}</script>
</body>
</html>
"""

    async def reference(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/html", headers=answer_headers)

    return reference


def docs_url(settings: Settings) -> str:
    """`/api/pmd/docs`, not `/docs`: behind a site's proxy only `/api/pmd/*` reaches us."""
    return settings.base_url + API_DOCS_PATH


def setup(app: web.Application) -> None:
    """The viewer's files under /api/pmd/docs/vendor/, which a site's proxy sends here."""
    app.router.add_static(API_VENDOR_URL + "/", VENDOR_DIR, name="reference_vendor")


ENDPOINTS = tuple(
    Endpoint(
        "get",
        path,
        _reference(spec_url, vendor_url),
        operation_id,
        summary,
        "operations",
        auth=Auth.PUBLIC,
        response_media="text/html",
        ok_description=f"The API reference: a page that renders {spec_url}",
        headers=HEADERS_DOC,
    )
    for path, spec_url, vendor_url, operation_id, summary in (
        ("/docs", SPEC_URL, VENDOR_URL, "docs", "This document, as a page to read"),
        (
            API_DOCS_PATH,
            API_SPEC_URL,
            API_VENDOR_URL,
            "apiDocs",
            "This document, as a page to read, under /api/pmd/ (where a site's proxy sends "
            "this service's requests)",
        ),
    )
)

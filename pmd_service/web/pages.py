"""Routes of the static dashboard page (`/u/{user_sqid}/posts`) and its assets."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from ..api.keys import SETTINGS
from ..core.codes import Code
from ..core.problems import not_found

STATIC_DIR = Path(__file__).parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"
# Links dev mode adds to the page's header (dev_pages.py), in place of this mark.
HEADER_LINKS = web.AppKey("page_header_links", str)
HEADER_LINKS_MARK = "<!-- header links -->"

# Only this origin, but images from the host site's CDN (`art_url`).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


async def dashboard(request: web.Request) -> web.StreamResponse:
    sqid = request.match_info["user_sqid"]
    alphabet = request.app[SETTINGS].sqids_alphabet
    if not 1 <= len(sqid) <= 16 or not set(sqid) <= set(alphabet):
        raise not_found("No user has this public id; check the link.", code=Code.NOT_FOUND)
    links = request.app.get(HEADER_LINKS)
    if links:
        page = await asyncio.to_thread(INDEX_HTML.read_text, "utf-8")
        return web.Response(
            text=page.replace(HEADER_LINKS_MARK, links),
            content_type="text/html",
            headers=PAGE_HEADERS,
        )
    return web.FileResponse(INDEX_HTML, headers=PAGE_HEADERS)


def setup(app: web.Application) -> None:
    app.router.add_get("/u/{user_sqid}/posts", dashboard, name="dashboard_page")
    app.router.add_static("/static/pmd/", STATIC_DIR, name="dashboard_static")
    if app[SETTINGS].dev_mode:  # imported here: production never imports dev/
        from . import dev_pages

        dev_pages.setup(app)
        app[HEADER_LINKS] = dev_pages.HEADER_LINKS

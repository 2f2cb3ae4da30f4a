"""Routes of the dashboard page (`/u/{user_sqid}/posts`), its assets, and dev-mode helpers.

The page is static: it holds no data and needs no authentication to load. Everything it shows
comes from the JSON API with the Bearer token the page keeps in sessionStorage, so these routes
sit outside `/api/pmd` and the auth middleware.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import asyncpg
from aiohttp import web

from ..core.problems import not_found
from ..dev.demo_user import DEMO_HANDLE, demo_user_sqid
from ..host.vault import VaultPathError, artwork_path
from .keys import DB_POOL, SETTINGS

STATIC_DIR = Path(__file__).parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"
PAGE_ROUTE = "dashboard_page"
STATIC_ROUTE = "dashboard_static"

_VAULT_NAME_RE = re.compile(r"^([0-9a-fA-F-]{36})\.(png|gif|webp|bmp)$")

# The page runs only its own scripts and talks only to this origin. Images may come from the
# host site's CDN (`art_url`), hence https: for img-src.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


async def dashboard(request: web.Request) -> web.FileResponse:
    sqid = request.match_info["user_sqid"]
    alphabet = request.app[SETTINGS].sqids_alphabet
    if not 1 <= len(sqid) <= 16 or not set(sqid) <= set(alphabet):
        raise not_found("No user has this public id; check the link.")
    return web.FileResponse(INDEX_HTML, headers=PAGE_HEADERS)


async def dev_root(request: web.Request) -> web.Response:
    """Dev mode only: `/` opens the demo user's page."""
    pool: asyncpg.Pool = request.app[DB_POOL]
    sqid = await demo_user_sqid(pool)
    if sqid is None:
        raise not_found(f"There is no @{DEMO_HANDLE} user yet: start the service with `make run`.")
    raise web.HTTPFound(f"/u/{sqid}/posts")


async def dev_vault(request: web.Request) -> web.FileResponse:
    """Dev mode only: artwork files for thumbnails, as the host site serves `art_url`.

    Only `{shard}/{uuid}.{png|gif|webp|bmp}` resolves (the shard of one or more levels), and
    never inside BDR_PATH: ZIPs are served by the authenticated endpoint alone.
    """
    settings = request.app[SETTINGS]
    match = _VAULT_NAME_RE.match(request.match_info["name"])
    if match is None:
        raise not_found("No such artwork file.")
    try:
        path = artwork_path(
            settings.vault_path, request.match_info["shard"], uuid.UUID(match[1]), match[2]
        )
    except (VaultPathError, ValueError):
        raise not_found("No such artwork file.") from None
    if path.is_relative_to(settings.bdr_path.resolve()) or not path.is_file():
        raise not_found("No such artwork file.")
    return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


def setup(app: web.Application) -> None:
    app.router.add_get("/u/{user_sqid}/posts", dashboard, name=PAGE_ROUTE)
    app.router.add_static("/static/pmd/", STATIC_DIR, name=STATIC_ROUTE)
    if app[SETTINGS].dev_mode:
        app.router.add_get("/", dev_root, name="dev_root")
        app.router.add_get("/vault/{shard:.+}/{name}", dev_vault, name="dev_vault")

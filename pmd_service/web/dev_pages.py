"""Dev mode's routes: `/` opens the demo user's page, `/vault/…` serves artwork files as the
host site does. Registered by pages.setup in dev mode only (the only time dev/ is imported)."""

from __future__ import annotations

import re
import uuid

import asyncpg
from aiohttp import web

from ..api.keys import DB_POOL, SETTINGS
from ..core.problems import not_found
from ..dev.demo_user import DEMO_HANDLE, demo_user_sqid
from ..host.vault import VaultPathError, artwork_path

_VAULT_NAME_RE = re.compile(r"^([0-9a-fA-F-]{36})\.(png|gif|webp|bmp)$")


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
    app.router.add_get("/", dev_root, name="dev_root")
    app.router.add_get("/vault/{shard:.+}/{name}", dev_vault, name="dev_vault")

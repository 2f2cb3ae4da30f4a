"""HTTP handlers of the posts endpoints: parse, call the service, answer JSON."""

from __future__ import annotations

from aiohttp import web

from ..posts import batches, listing
from ..posts.host_cache import drop_cached_feeds
from ..posts.schemas import ActionRequest, ActionResult, LicenseList, LicenseRequest, PostPage
from .auth import retarget
from .keys import DB_POOL, HOST_CACHE, PRINCIPAL, SETTINGS
from .openapi import Operation, Param
from .responses import json_response
from .validation import query_bool, query_int, read_json

MAX_PAGE = 512


async def list_posts(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", MAX_PAGE, 1, MAX_PAGE)
    deleted = query_bool(request, "deleted")
    page = await listing.list_posts(
        request.app[DB_POOL],
        request[PRINCIPAL].target.id,
        limit,
        request.query.get("cursor") or None,
        deleted,
    )
    return json_response(page)


async def post_action(request: web.Request) -> web.Response:
    body = await read_json(request, ActionRequest)
    principal = await retarget(request, body.target_sqid)
    outcome = await batches.apply_action(
        request.app[DB_POOL], principal, body.action, body.post_ids
    )
    cache = request.app[HOST_CACHE]
    if cache is not None and outcome.changed:
        # Every action here changes what the host's feeds show (the host itself drops them
        # after hide and delete only; an unhide or restore must not wait out the cache either).
        await drop_cached_feeds(cache, request.app[SETTINGS].host_cache_patterns)
    return _result(outcome)


async def post_license(request: web.Request) -> web.Response:
    body = await read_json(request, LicenseRequest)
    principal = await retarget(request, body.target_sqid)
    outcome = await batches.set_license(
        request.app[DB_POOL], principal, body.post_ids, body.license_id
    )
    return _result(outcome)


def _result(outcome: batches.BatchOutcome) -> web.Response:
    return json_response(
        ActionResult(
            success=True,
            affected_count=outcome.acted_on,
            message=outcome.message,
            changed_count=outcome.changed,
        )
    )


async def list_licenses(request: web.Request) -> web.Response:
    return json_response(await listing.list_licenses(request.app[DB_POOL]))


OPERATIONS = (
    Operation(
        "get", "/api/pmd/posts", "listPosts",
        "The target's artworks (playlists excluded), newest first, keyset-paginated", "posts",
        response=PostPage,
        params=(
            Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": MAX_PAGE},
                  "Page size"),
            Param("cursor", {"type": "string", "maxLength": 100},
                  "`next_cursor` of the previous page; omit for the first page"),
            Param("deleted", {"type": "boolean", "default": False},
                  "List posts deleted within the 7-day restore window instead"),
        ),
    ),
    Operation(
        "post", "/api/pmd/action", "batchAction",
        "Hide, unhide, delete or restore up to 128 posts, all or nothing", "posts",
        request=ActionRequest, response=ActionResult,
    ),
    Operation(
        "post", "/api/pmd/license", "batchLicense",
        "Set (or clear with null) the license of up to 128 posts, all or nothing", "posts",
        request=LicenseRequest, response=ActionResult,
    ),
    Operation(
        "get", "/api/pmd/licenses", "listLicenses",
        "The licenses a post can carry (for POST /api/pmd/license)", "posts",
        response=LicenseList,
    ),
)  # fmt: skip


def setup(app: web.Application) -> None:
    app.router.add_get("/api/pmd/posts", list_posts, name="list_posts")
    app.router.add_post("/api/pmd/action", post_action, name="post_action")
    app.router.add_post("/api/pmd/license", post_license, name="post_license")
    app.router.add_get("/api/pmd/licenses", list_licenses, name="list_licenses")

"""The posts endpoints: parse, call the service, answer JSON."""

from __future__ import annotations

from aiohttp import web

from ..posts import batches, listing
from ..posts.filters import check_filter
from ..posts.host_cache import drop_cached_feeds
from ..posts.schemas import (
    ActionRequest,
    ActionResult,
    LicenseList,
    LicenseRequest,
    PostPage,
    PostsQuery,
)
from .auth import retarget
from .declaration import Endpoint
from .keys import DB_POOL, HOST_CACHE, PRINCIPAL, SETTINGS
from .responses import json_response
from .routing import parse_query
from .validation import read_json


async def list_posts(request: web.Request) -> web.Response:
    query = parse_query(request, PostsQuery)
    pool = request.app[DB_POOL]
    where = await check_filter(pool, query.filter_keys())
    page = await listing.list_posts(
        pool, request[PRINCIPAL].target.id, query.limit, query.cursor or None, query.deleted, where
    )
    return json_response(page)


async def post_action(request: web.Request) -> web.Response:
    body = await read_json(request, ActionRequest)
    principal = await retarget(request, body.target_sqid)
    outcome = await batches.apply_action(
        request.app[DB_POOL], principal, body.action, body.post_ids
    )
    await _drop_cached_feeds(request, outcome)
    return _result(outcome)


async def _drop_cached_feeds(request: web.Request, outcome: batches.BatchOutcome) -> None:
    cache = request.app[HOST_CACHE]
    if cache is not None and outcome.changed:
        # Every bulk write changes what the host's cached feeds show (the host's PMD drops them
        # after hide and delete only, its own edit after a tag change; an unhide, a restore or
        # a new license must not wait out the cache either).
        await drop_cached_feeds(cache, request.app[SETTINGS].host_cache_patterns)


async def post_license(request: web.Request) -> web.Response:
    body = await read_json(request, LicenseRequest)
    principal = await retarget(request, body.target_sqid)
    outcome = await batches.set_license(
        request.app[DB_POOL], principal, body.post_ids, body.license_id
    )
    await _drop_cached_feeds(request, outcome)
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


ENDPOINTS = (
    Endpoint(
        "get", "/api/pmd/posts", list_posts, "listPosts",
        "The target's artworks (playlists excluded), newest first, keyset-paginated", "posts",
        query=PostsQuery, response=PostPage,
    ),
    Endpoint(
        "post", "/api/pmd/action", post_action, "batchAction",
        "Hide, unhide, delete or restore up to 128 posts, all or nothing", "posts",
        request=ActionRequest, response=ActionResult,
    ),
    Endpoint(
        "post", "/api/pmd/license", post_license, "batchLicense",
        "Set (or clear with null) the license of up to 128 posts, all or nothing", "posts",
        request=LicenseRequest, response=ActionResult,
    ),
    Endpoint(
        "get", "/api/pmd/licenses", list_licenses, "listLicenses",
        "The licenses a post can carry (for POST /api/pmd/license)", "posts",
        response=LicenseList,
    ),
)  # fmt: skip

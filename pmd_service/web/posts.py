"""The posts endpoints: parse, call the service, answer JSON."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from ..access import could_be_sqid
from ..posts import batches, listing
from ..posts.host_cache import drop_cached_feeds
from ..posts.schemas import (
    ActionRequest,
    ActionResult,
    LicenseList,
    LicenseRequest,
    ListedPage,
    PostPage,
    PostsQuery,
)
from ..problems import ProblemError
from .auth import principal_of, required_bearer_token, retarget, token_subject
from .endpoint import Auth, Endpoint
from .endpoints import parse_query
from .keys import DB_POOL, HOST_CACHE, PRINCIPAL, SETTINGS
from .responses import json_response
from .validation import read_json


async def list_posts(request: web.Request) -> web.Response:
    # Authenticated here, not by the route's wrapper, to overlap two round trips: once the
    # token is verified, the page of the user it names (or `target_sqid`) is read by public id
    # while the caller's row is read and the rules applied. Nothing read early is used unless
    # the principal then has that very target; every answer (which error comes first, too) is
    # the wrapper's. ~0.3 ms of a ~8 ms page on an idle machine, more under load.
    subject = token_subject(request, required_bearer_token(request))
    pool = request.app[DB_POOL]
    try:
        query: PostsQuery | None = parse_query(request, PostsQuery)
        invalid: ProblemError | None = None
    except ProblemError as exc:  # told only once the caller is known, as the wrapper does
        query, invalid = None, exc
    sqid = request.query.get("target_sqid", subject.sqid)
    early: asyncio.Task[ListedPage] | None = None
    used = False
    if query is not None and sqid is not None and could_be_sqid(sqid):
        early = asyncio.create_task(_page(pool, sqid, query))
    try:
        principal = await principal_of(request, subject)
        request[PRINCIPAL] = principal
        if invalid is not None:
            raise invalid
        assert query is not None
        if early is not None and principal.target.public_sqid == sqid:
            used = True
            page = await early
        else:
            page = await _page(pool, principal.target.id, query)
    finally:
        if early is not None and not used:  # cancelled, or its outcome collected unread
            early.cancel()
            await asyncio.gather(early, return_exceptions=True)
    return json_response(page)


async def _page(pool: asyncpg.Pool, owner: int | str, query: PostsQuery) -> ListedPage:
    return await listing.list_posts(pool, owner, query.limit, query.cursor or None, query.deleted)


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


ENDPOINTS = (
    Endpoint(
        "get", "/api/pmd/posts", list_posts, "listPosts",
        "The target's artworks (playlists excluded), newest first, keyset-paginated", "posts",
        auth=Auth.OWN, query=PostsQuery, response=PostPage,
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

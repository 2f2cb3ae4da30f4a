"""The posts' endpoints: parse, call the service, answer JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec
from aiohttp import web

from ...api.auth import retarget
from ...api.declaration import Endpoint, Param
from ...api.keys import COLLECTORS, DB_POOL, PRINCIPAL, REDIS, SETTINGS
from ...api.responses import json_response
from ...api.routing import parse_query
from ...api.validation import path_uuid, read_json
from ...core.codes import Code
from ...host.access import Principal
from . import batches, history, listing, undo
from .actions import ACTIONS, LICENSE, named
from .filters import check_filter
from .host_cache import FeedDrops, FeedDropsCollector, create_host_cache
from .pace import Budget, take_turn
from .schemas import (
    ActionList,
    ActionRequest,
    ActionResult,
    ActionsQuery,
    LicenseList,
    LicenseRequest,
    PageTarget,
    PostPage,
    PostsQuery,
    UndoResult,
)
from .sorting import check_sort


async def list_posts(request: web.Request) -> web.Response:
    query = parse_query(request, PostsQuery)
    pool = request.app[DB_POOL]
    sort = check_sort(query.sort, query.order, query.deleted)
    where = await check_filter(pool, query.filter_keys())
    principal = request[PRINCIPAL]
    page = await listing.list_posts(
        pool,
        principal.target.id,
        query.limit,
        query.cursor or None,
        query.deleted,
        where,
        as_moderator=principal.as_moderator,
        sort=sort,
    )
    page.target = PageTarget(principal.target.public_sqid, principal.target.handle)
    return json_response(page)


async def post_action(request: web.Request) -> web.Response:
    body = await read_json(request, ActionRequest)
    return await _act(request, body, body.action, lambda: named(body.action).values(body))


async def post_license(request: web.Request) -> web.Response:
    body = await read_json(request, LicenseRequest)
    return await _act(request, body, LICENSE.name, lambda: (body.license_id,))


async def _act(
    request: web.Request,
    body: ActionRequest | LicenseRequest,
    action: str,
    values: Callable[[], tuple[object, ...]],
) -> web.Response:
    """Who acts on whose posts, and which posts, once the caller's turn is taken; then `action`."""
    principal = await retarget(request, body.target_sqid)
    await _take_turn(request, principal)
    pool, settings = request.app[DB_POOL], request.app[SETTINGS]
    target = await batches.target_of(
        pool, body.post_ids, body.filter, body.expect_count, body.expect_digest, body.click_id
    )
    outcome = await batches.apply_action(
        pool, principal, action, target, *values(),
        budget=Budget.of(settings), max_posts=settings.bulk_max_posts, click=body.click_id,
    )  # fmt: skip
    _drop_cached_feeds(request, outcome.changed)
    left, action_id = outcome.left, outcome.action_id
    return json_response(
        ActionResult(
            success=True,
            affected_count=outcome.acted_on,
            message=outcome.message,
            changed_count=outcome.changed,
            undo=None if action_id is None else history.undo_link(action_id, principal),
            # Only a restore by filter leaves posts (and says so); every other action is whole.
            left_count=msgspec.UNSET if left is None else sum(g.count for g in left),
            left=msgspec.UNSET if left is None else list(left),
        )
    )


def _drop_cached_feeds(request: web.Request, changed: int) -> None:
    drops = request.app[FEED_DROPS]
    if drops is not None and changed:
        # Every bulk write changes what the host's cached feeds show: dropped after the reply.
        drops.request()


async def _take_turn(request: web.Request, principal: Principal) -> None:
    per_minute = request.app[SETTINGS].bulk_actions_per_minute
    await take_turn(request.app[REDIS], principal.caller.id, per_minute)


async def post_undo(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    await _take_turn(request, principal)
    budget = Budget.of(request.app[SETTINGS])
    result = await undo.undo(request.app[DB_POOL], principal, path_uuid(request), budget=budget)
    _drop_cached_feeds(request, result.affected_count)
    return json_response(result)


async def list_actions(request: web.Request) -> web.Response:
    query = parse_query(request, ActionsQuery)
    page = await history.recent_actions(
        request.app[DB_POOL], request[PRINCIPAL], query.limit, query.cursor or None
    )
    return json_response(page)


async def list_licenses(request: web.Request) -> web.Response:
    return json_response(await listing.list_licenses(request.app[DB_POOL]))


# "Hide, unhide, …, retag or set the remix permission of": POST /api/pmd/action's actions.
_VERBS = [action.verb for action in ACTIONS if not action.own_endpoint]
_ACTION_VERBS = ", ".join(_VERBS[:-1]) + " or " + _VERBS[-1]
_ACTION_VERBS = _ACTION_VERBS[0].upper() + _ACTION_VERBS[1:]

# Every bulk write's, undos' too (features/posts/pace.py).
_PACED = (
    "More bulk actions in the last minute than BULK_ACTIONS_PER_MINUTE (`details.reason` "
    "`rate_limited`); or more changed posts than the budget allows, per person (an owner's "
    "own writes, a moderator's on anyone's posts, each charged to the one who acts), in the "
    "last minute (BULK_CHANGED_POSTS_PER_MINUTE) or hour (BULK_CHANGED_POSTS_PER_HOUR) "
    "(`row_budget_exceeded`, `scope` `owner` or `moderator`), or, for an owner's own writes, "
    "across the site in the last minute (BULK_CHANGED_POSTS_SITE_PER_MINUTE; "
    "`site_budget_exceeded`, `scope` `site`), refused whole before any post changed "
    "(`details`: `limit`, `window_seconds`, `used`, `requested`, `retry_after_seconds`, "
    "`scope`). All send `Retry-After`"
)

# The host's cached feeds, dropped in the background; None when HOST_CACHE_REDIS_URL is unset.
FEED_DROPS: web.AppKey[FeedDrops | None] = web.AppKey("feed_drops")


async def host_cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The task dropping the host's cached feeds after actions."""
    settings = app[SETTINGS]
    if settings.host_cache_redis_url is None:
        app[FEED_DROPS] = None
        yield
        return
    cache = create_host_cache(settings.host_cache_redis_url)
    app[FEED_DROPS] = drops = FeedDrops(cache, settings.host_cache_patterns)
    app[COLLECTORS].register(FeedDropsCollector(drops))
    drops.start()
    yield
    await drops.stop()
    await cache.aclose()


ENDPOINTS = (
    Endpoint(
        "get", "/api/pmd/posts", list_posts, "listPosts",
        "The target's artworks (playlists excluded), newest first or in `sort`, keyset-paginated",
        "posts",
        query=PostsQuery, response=PostPage,
        codes=(Code.INVALID_CURSOR, Code.INVALID_SORT, Code.INVALID_FILTER),
    ),
    Endpoint(
        "post", "/api/pmd/action", post_action, "batchAction",
        f"{_ACTION_VERBS} up to 128 posts, or of every post a filter matches (with the "
        "count approved), all or nothing (a restore by filter restores what may be restored "
        "and answers what it left)", "posts",
        request=ActionRequest, response=ActionResult, problems=(409, 429),
        codes=(Code.TARGET_MISMATCH, Code.POSTS_NOT_OWNED, Code.POSTS_NOT_RESTORABLE,
               Code.POSTS_DELETED_BY_MODERATOR, Code.TOO_MANY_TAGS, Code.NO_DERIVATIVES_LICENSE,
               Code.INVALID_TAGS, Code.VALUE_REQUIRED, Code.TOO_MANY_POSTS, Code.INVALID_FILTER,
               Code.COUNT_CHANGED, Code.SET_CHANGED, Code.ARTWORK_REUPLOADED,
               Code.RESTORE_INTERRUPTED, Code.RATE_LIMITED, Code.ROW_BUDGET_EXCEEDED,
               Code.SITE_BUDGET_EXCEEDED),
        problem_notes={409: "By filter: the matching posts are not `expect_count` any more, or "
                            "not the set `expect_digest` named (`count` and `match_digest` "
                            "carry the set now); or a restore by ids names a post whose artwork "
                            "another post holds (`conflicts` names each, and its holder when "
                            "it is the owner's own)",
                       429: _PACED},
    ),
    Endpoint(
        "post", "/api/pmd/license", post_license, "batchLicense",
        "Set (or clear with null) the license of up to 128 posts, or of every post a filter "
        "matches (with the count approved), all or nothing", "posts",
        request=LicenseRequest, response=ActionResult, problems=(409, 429),
        codes=(Code.TARGET_MISMATCH, Code.POSTS_NOT_OWNED, Code.UNKNOWN_LICENSE,
               Code.TOO_MANY_POSTS, Code.INVALID_FILTER, Code.COUNT_CHANGED, Code.SET_CHANGED,
               Code.RATE_LIMITED, Code.ROW_BUDGET_EXCEEDED,
               Code.SITE_BUDGET_EXCEEDED),
        problem_notes={409: "By filter: the matching posts are not `expect_count` any more, or "
                            "not the set `expect_digest` named (`count` and `match_digest` "
                            "carry the set now)",
                       429: _PACED},
    ),
    Endpoint(
        "post", "/api/pmd/actions/{id}/undo", post_undo, "undoAction",
        "Within 24 hours, put back what a bulk action changed (posts changed since are left)",
        "posts", response=UndoResult, problems=(404, 409, 410, 429),
        params=(Param("id", {"type": "string", "format": "uuid"},
                      "The action, from its answer's `undo` link", location="path"),),
        codes=(Code.INVALID_ID, Code.ACTION_NOT_FOUND, Code.ALREADY_UNDONE, Code.UNDO_EXPIRED,
               Code.UNDO_DROPPED, Code.UNDO_HISTORY_MISSING, Code.ARTWORK_REUPLOADED,
               Code.RESTORE_INTERRUPTED, Code.RATE_LIMITED, Code.ROW_BUDGET_EXCEEDED,
               Code.SITE_BUDGET_EXCEEDED),
        problem_notes={409: "Undone already; or the undo of a delete names a post whose "
                            "artwork another post now holds (`conflicts` names each)",
                       410: "Older than 24 hours, or its history was dropped to keep the "
                            "person's undo history within its cap",
                       429: _PACED},
    ),
    Endpoint(
        "get", "/api/pmd/actions", list_actions, "listActions",
        "The bulk actions on the target's posts within the undo window (24 hours), newest "
        "first, keyset-paginated, each with its undo link while the caller may undo it",
        "posts", query=ActionsQuery, response=ActionList, codes=(Code.INVALID_CURSOR,),
    ),
    Endpoint(
        "get", "/api/pmd/licenses", list_licenses, "listLicenses",
        "The licenses a post can carry (for POST /api/pmd/license)", "posts",
        response=LicenseList,
    ),
)  # fmt: skip

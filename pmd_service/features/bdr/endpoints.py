"""The download request (BDR) endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ...api.declaration import Auth, Endpoint, Param
from ...api.keys import DB_POOL, PRINCIPAL, REDIS, SETTINGS, ZIP_FILES
from ...api.responses import json_response
from ...api.validation import path_uuid
from ...api.zip_download import DOWNLOAD_PARAMS, DownloadQuery, download, zip_answers, zip_request
from ...core.codes import Code
from ...core.logs import REQUEST_ID_HEADER
from ...storage.budget import Limits
from . import service
from .announcer import Announcer
from .schemas import BdrItem, BdrList, BdrRequest


async def create_bdr(request: web.Request) -> web.Response:
    body, principal, rid = await zip_request(request, BdrRequest)
    limits = Limits.of(request.app[SETTINGS])
    item = await service.create(request.app[DB_POOL], principal, body, limits, rid)
    response = json_response(
        item,
        status=202,
        headers={"Location": f"/api/pmd/bdr/{item.id}", REQUEST_ID_HEADER: rid},
    )
    # The reply goes out before the request's first event, which would make a second card first.
    await response.prepare(request)
    await response.write_eof()
    await request.app[ANNOUNCER].after_reply(item.id)
    return response


async def announcer_ctx(app: web.Application) -> AsyncIterator[None]:
    hold = app[SETTINGS].sse_first_event_hold_ms / 1000
    app[ANNOUNCER] = announcer = Announcer(app[DB_POOL], app[REDIS], hold)
    yield
    await announcer.flush()


async def list_bdrs(request: web.Request) -> web.Response:
    pool, principal = request.app[DB_POOL], request[PRINCIPAL]
    items = await service.newest(pool, principal.target.id)
    limits = Limits.of(request.app[SETTINGS])
    day = await service.used_today(pool, principal.caller.id, limits)
    return json_response(BdrList(items=items, daily_limit=day))


async def get_bdr(request: web.Request) -> web.Response:
    item = await service.get(request.app[DB_POOL], path_uuid(request), request[PRINCIPAL].target.id)
    return json_response(item)


async def delete_bdr(request: web.Request) -> web.Response:
    pool, bdr_id, principal = request.app[DB_POOL], path_uuid(request), request[PRINCIPAL]
    await service.cancel_or_remove(pool, request.app[ZIP_FILES], bdr_id, principal)
    await service.audit(pool, principal, "pmd_bdr_delete", bdr_id)
    return web.Response(status=204)


async def download_bdr(request: web.Request) -> web.StreamResponse:
    bdr_id, by = path_uuid(request), request[PRINCIPAL]
    # Every GET reads it, whatever its range or a redirect to a bucket; a HEAD reads nothing.
    reads = request.method == "GET"
    return await download(
        request,
        lambda pool, files: service.download(pool, files, bdr_id, by, reads=reads),
        Code.BDR_EXPIRED,
    )


_ID = Param("id", {"type": "string", "format": "uuid"}, "The download request id", location="path")


ENDPOINTS = (
    Endpoint(
        "post",
        "/api/pmd/bdr",
        create_bdr,
        "createBdr",
        "Request a ZIP of up to 128 artworks",
        "downloads",
        ok_status=202,
        ok_description="Accepted: the request is queued",
        request=BdrRequest,
        response=BdrItem,
        problems=(409, 429, 503),
        codes=(
            Code.TARGET_MISMATCH,
            Code.POSTS_NOT_OWNED,
            Code.BDR_TOO_LARGE,
            Code.BDR_DAILY_LIMIT,
            Code.BDR_DAILY_BYTES_LIMIT,
            Code.LOW_DISK_SPACE,
            Code.BDR_REPEATED,
        ),
        problem_notes={
            409: "`bdr_repeated` (only with `repeat: false`): a download of exactly these "
            "posts still serves; `details` names it (`bdr_id`, `status`)",
            503: "The ZIP folder's file system is short of free space "
            "(ZIP_MIN_FREE_BYTES); see Retry-After",
        },
        headers={"Location": "The new request's URL"},
    ),
    Endpoint(
        "get",
        "/api/pmd/bdr",
        list_bdrs,
        "listBdrs",
        "The 20 newest download requests, and what the caller spent of today's limits",
        "downloads",
        response=BdrList,
    ),
    Endpoint(
        "get",
        "/api/pmd/bdr/{id}",
        get_bdr,
        "getBdr",
        "One download request",
        "downloads",
        response=BdrItem,
        params=(_ID,),
        problems=(404,),
        codes=(Code.INVALID_ID, Code.BDR_NOT_FOUND),
    ),
    Endpoint(
        "delete",
        "/api/pmd/bdr/{id}",
        delete_bdr,
        "deleteBdr",
        "Cancel a pending/processing request, or remove a ready ZIP",
        "downloads",
        ok_status=204,
        ok_description="Cancelled, or removed (then `expired` with `removed_at` set)",
        params=(_ID,),
        problems=(403, 404),
        codes=(Code.INVALID_ID, Code.BDR_NOT_FOUND, Code.BDR_MADE_BY_MODERATOR),
    ),
    Endpoint(
        "get",
        "/api/pmd/bdr/{id}/download",
        download_bdr,
        "downloadBdr",
        "The ZIP (Range supported)",
        "downloads",
        response_media="application/zip",
        auth=Auth.BEARER_OR_TICKET,
        query=DownloadQuery,
        ok_description="The whole ZIP: no Range, or one that is ignored (several ranges, "
        "an invalid one, or an If-Range that does not hold)",
        params=(_ID, *DOWNLOAD_PARAMS),
        **zip_answers(
            "makapix-artworks-….zip",
            "download",
            (Code.BDR_NOT_FOUND, Code.BDR_NOT_READY, Code.BDR_NO_FILE, Code.BDR_EXPIRED),
            not_ready=Code.BDR_NOT_READY,
        ),
    ),
)

# Publishes new requests' first events, a moment after their replies.
ANNOUNCER: web.AppKey[Announcer] = web.AppKey("announcer")

"""The download request (BDR) endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from ..bdr import service
from ..bdr.announcer import Announcer
from ..bdr.budget import Limits, ensure_free_space
from ..bdr.files import StoredZip
from ..bdr.schemas import BdrItem, BdrList, BdrRequest
from ..core.logs import REQUEST_ID_HEADER
from . import object_download, request_ids
from .auth import retarget
from .declaration import Auth, Endpoint, Param
from .keys import ANNOUNCER, DB_POOL, PRINCIPAL, PROXY_SLOTS, REDIS, SETTINGS, ZIP_FILES
from .responses import json_response
from .validation import path_uuid, read_json


async def create_bdr(request: web.Request) -> web.Response:
    body = await read_json(request, BdrRequest)
    principal = await retarget(request, body.target_sqid)
    # The request's id: stored in the BDR row, it follows the BDR (worker logs, its email).
    rid = request_ids.current()
    settings = request.app[SETTINGS]
    if settings.bdr_store is None:  # a bucket has no free space to run out of
        await ensure_free_space(settings.bdr_path, settings.bdr_min_free_bytes)
    item = await service.create(request.app[DB_POOL], principal, body, Limits.of(settings), rid)
    response = json_response(
        item,
        status=202,
        headers={"Location": f"/api/pmd/bdr/{item.id}", REQUEST_ID_HEADER: rid},
    )
    # The reply goes out before the request's first event exists, and the event comes a moment
    # later still: the host's page adds the reply to its list and updates cards by id from the
    # stream, so a stream event handled first would leave a second card that never changes.
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
    items = await service.newest(request.app[DB_POOL], request[PRINCIPAL].target.id)
    return json_response(BdrList(items=items))


async def get_bdr(request: web.Request) -> web.Response:
    bdr_id = path_uuid(request)
    return json_response(
        await service.get(request.app[DB_POOL], bdr_id, request[PRINCIPAL].target.id)
    )


async def delete_bdr(request: web.Request) -> web.Response:
    bdr_id = path_uuid(request)
    principal = request[PRINCIPAL]
    await service.cancel_or_remove(request.app[DB_POOL], request.app[ZIP_FILES], bdr_id, principal)
    await service.audit(request.app[DB_POOL], principal, "pmd_bdr_delete", bdr_id)
    return web.Response(status=204)


async def download_bdr(request: web.Request) -> web.StreamResponse:
    bdr_id = path_uuid(request)
    principal = request[PRINCIPAL]
    files = request.app[ZIP_FILES]
    refuse_if_no_proxy_slot(request)
    found = await service.download(request.app[DB_POOL], files, bdr_id, principal.target.id)
    stored = found.stored
    # Every GET, whatever its range (a download resumed from byte 1 reads the ZIP as well), and
    # the redirect to a bucket's signed URL alike; a HEAD reads nothing. One row an hour.
    if request.method == "GET":
        await service.audit_read(request.app[DB_POOL], principal, bdr_id)
    return await send_zip(request, stored, found.filename, service.repr_digest(found.sha256))


def refuse_if_no_proxy_slot(request: web.Request) -> None:
    """Proxy mode: a download the caller's (or this server's) slots are full for is refused
    before the database or the store is asked anything (a HEAD to the store each, otherwise)."""
    settings = request.app[SETTINGS]
    if (
        settings.bdr_store is not None
        and settings.bdr_download_mode == "proxy"
        and request.method == "GET"
    ):
        request.app[PROXY_SLOTS].check(request[PRINCIPAL].caller.id)


async def send_zip(
    request: web.Request, stored: StoredZip, filename: str, digest: Mapping[str, str]
) -> web.StreamResponse:
    """A ZIP found for the caller (a BDR's, or an export's part): a redirect to a signed URL, or
    its bytes, with ranges and conditions (object_download)."""
    files = request.app[ZIP_FILES]
    settings = request.app[SETTINGS]
    if stored.key is not None and settings.bdr_download_mode == "redirect":
        # The bytes go from the bucket to the browser; the checks before stay in front. The
        # object carries the file name (Content-Disposition, set at upload).
        return await object_download.redirect(request, files, stored)
    headers = {
        "Content-Type": "application/zip",
        "Content-Disposition": f"attachment; filename={filename}",
        "Cache-Control": "private, no-store",
        **digest,
    }
    proxying = object_download.Proxying(
        request.app[PROXY_SLOTS], request[PRINCIPAL].caller.id, settings.bdr_proxy_idle_seconds
    )
    return await object_download.serve(request, files, stored, headers, proxying)


class DownloadQuery(msgspec.Struct):
    """The download's query: a browser saving the ZIP itself sends no Authorization header."""

    ticket: (
        Annotated[
            str,
            Meta(
                description="A ticket from POST /api/pmd/bdr/sse-ticket?bdr_id=<this id>, instead "
                "of the Bearer header: for a link the browser follows and saves itself (no blob "
                "in the page); good for this request's ZIP only"
            ),
        ]
        | None
    ) = None


_ID = Param("id", {"type": "string", "format": "uuid"}, "The download request id", location="path")


def download_params() -> tuple[Param, ...]:
    """The headers a ZIP download answers to (a BDR's, or an export part's)."""
    return (
        Param("Range", {"type": "string"}, "One byte range (`bytes=0-1023`, `bytes=1024-`, "
              "`bytes=-512`); several ranges, or an invalid one, are answered with the "
              "whole file"),
        Param("If-Range", {"type": "string"}, "Serve the range only if the file still "
              "has this ETag or Last-Modified date"),
        Param("If-Match", {"type": "string"}, "412 unless the ZIP has one of these "
              "ETags (`*`: any)"),
        Param("If-Unmodified-Since", {"type": "string"}, "412 when the ZIP changed after "
              "this HTTP date (ignored with If-Match)"),
        Param("If-None-Match", {"type": "string"}, "304 when the ZIP has one of these "
              "ETags (`*`: any)"),
        Param("If-Modified-Since", {"type": "string"}, "304 when the ZIP has not changed "
              "since this HTTP date (ignored with If-None-Match)"),
    )  # fmt: skip


def zip_answers(filename: str, what: str) -> dict[str, Any]:
    """The answers of a ZIP download as Endpoint arguments: `filename` as the header shows it,
    `what` the resource's name in the notes ("download", "part")."""
    # What a cache or a resuming client needs of every answer with the ZIP's bytes (200, 206).
    validators = {
        "ETag": "The ZIP's entity tag (If-Match, If-None-Match, If-Range)",
        "Last-Modified": "When the ZIP was written (If-Modified-Since, If-Unmodified-Since, If-Range)",
        "Accept-Ranges": "`bytes`: a download can be resumed with Range",
        "Cache-Control": "`private, no-store`",
    }
    zip_headers = {
        **validators,
        "Repr-Digest": "The whole ZIP's SHA-256 (RFC 9530: `sha-256=:<base64>:`), on a 206 too: "
        "check the saved file against it",
        "Content-Disposition": f"attachment; filename={filename}",
        "Content-Length": "The bytes in this answer: the whole ZIP's size for a 200, the range's for a 206",
    }
    return {
        "headers": zip_headers,
        "problems": (404, 409, 410, 412, 416, 429, 503),
        "problem_notes": {
            409: f"The {what} is not ready (still being built), or was never built",
            410: f"The {what} expired or was removed, or its file is gone",
            412: "If-Match or If-Unmodified-Since does not hold for the ZIP; `ETag` is "
                 "the ZIP's now",
            416: "The one range asked for holds no byte of the ZIP (it starts at or past "
                 "the end, or is `bytes=-0`); `Content-Range: bytes */<size>`",
            429: "Proxy mode: BDR_PROXY_MAX_PER_USER downloads of the caller are already "
                 "streaming from this server; see Retry-After",
            503: "The object store did not answer within STORE_TIMEOUT_SECONDS, or (proxy "
                 "mode) this server streams BDR_PROXY_MAX_DOWNLOADS downloads already; "
                 "see Retry-After",
        },
        # One range at most: a request for several is answered 200 with the whole ZIP,
        # never multipart/byteranges (object_download._byte_range).
        "other_responses": (
            (206, "The one byte range asked for (If-Range, if sent, holds)", "application/zip"),
            (304, "Not modified: If-None-Match (`*` included) or If-Modified-Since matches "
             "the ZIP", None),
            (302, "With BDR_STORE in a bucket (and BDR_DOWNLOAD_MODE=redirect): `Location` is "
             "a signed URL of the ZIP, valid BDR_SIGNED_URL_SECONDS", None),
        ),
        "status_headers": {
            206: {**zip_headers, "Content-Range": "`bytes <first>-<last>/<size>`: where "
                  "this part lies in the ZIP"},
            304: validators,
            302: {"Location": "A signed URL of the ZIP (conditions and ranges are the "
                  "store's to answer there)", "Cache-Control": "`private, no-store`"},
            412: {"ETag": "The ZIP's entity tag now"},
            416: {"Content-Range": "`bytes */<size>`: the ZIP's size"},
        },
    }  # fmt: skip


ENDPOINTS = (
    Endpoint(
        "post", "/api/pmd/bdr", create_bdr, "createBdr", "Request a ZIP of up to 128 artworks",
        "downloads", ok_status=202, ok_description="Accepted: the request is queued",
        request=BdrRequest, response=BdrItem, problems=(429, 503),
        problem_notes={503: "The ZIP folder's file system is short of free space "
                            "(BDR_MIN_FREE_BYTES); see Retry-After"},
        headers={"Location": "The new request's URL"},
    ),
    Endpoint("get", "/api/pmd/bdr", list_bdrs, "listBdrs", "The 20 newest download requests",
             "downloads", response=BdrList),
    Endpoint("get", "/api/pmd/bdr/{id}", get_bdr, "getBdr", "One download request", "downloads",
             response=BdrItem, params=(_ID,), problems=(404,)),
    Endpoint("delete", "/api/pmd/bdr/{id}", delete_bdr, "deleteBdr",
             "Cancel a pending/processing request, or remove a ready ZIP", "downloads",
             ok_status=204, ok_description="Cancelled, or removed (then `expired` with `removed_at` set)",
             params=(_ID,), problems=(403, 404)),
    Endpoint("get", "/api/pmd/bdr/{id}/download", download_bdr, "downloadBdr",
             "The ZIP (Range supported)", "downloads", response_media="application/zip",
             auth=Auth.BEARER_OR_TICKET, query=DownloadQuery,
             ok_description="The whole ZIP: no Range, or one that is ignored (several ranges, "
                            "an invalid one, or an If-Range that does not hold)",
             params=(_ID, *download_params()),
             **zip_answers("makapix-artworks-….zip", "download")),
)  # fmt: skip

"""The full-export endpoints: owner only, parts served as BDR ZIPs are."""

from __future__ import annotations

from aiohttp import web

from ...api.declaration import Auth, Endpoint, Param
from ...api.keys import DB_POOL, PRINCIPAL, REDIS, SETTINGS, ZIP_FILES
from ...api.responses import json_response
from ...api.validation import path_uuid
from ...api.zip_download import DOWNLOAD_PARAMS, DownloadQuery, download, zip_answers, zip_request
from ...core.codes import Code
from ...core.logs import REQUEST_ID_HEADER
from ...core.problems import not_found
from . import service
from .schemas import ExportItem, ExportList, ExportRequest, NothingChanged, export_base_url


async def create_export(request: web.Request) -> web.Response:
    body, principal, rid = await zip_request(request, ExportRequest)
    item = await service.create(request.app[DB_POOL], principal, body, request.app[SETTINGS], rid)
    if isinstance(item, NothingChanged):
        return json_response(item, headers={REQUEST_ID_HEADER: rid})
    await service.enqueue(request.app[REDIS], item.id)
    headers = {"Location": export_base_url(item.id), REQUEST_ID_HEADER: rid}
    return json_response(item, status=202, headers=headers)


async def list_exports(request: web.Request) -> web.Response:
    found = await service.newest(request.app[DB_POOL], request[PRINCIPAL], request.app[SETTINGS])
    return json_response(found)


async def get_export(request: web.Request) -> web.Response:
    export_id = path_uuid(request)
    return json_response(await service.get(request.app[DB_POOL], export_id, request[PRINCIPAL]))


async def delete_export(request: web.Request) -> web.Response:
    export_id, files = path_uuid(request), request.app[ZIP_FILES]
    await service.cancel_or_remove(request.app[DB_POOL], files, export_id, request[PRINCIPAL])
    return web.Response(status=204)


async def delete_schedule(request: web.Request) -> web.Response:
    await service.cancel_schedule(request.app[DB_POOL], request[PRINCIPAL])
    return web.Response(status=204)


async def export_sha256sums(request: web.Request) -> web.Response:
    text = await service.sha256sums(request.app[DB_POOL], path_uuid(request), request[PRINCIPAL])
    return web.Response(
        text=text,
        content_type="text/plain",
        headers={
            "Content-Disposition": "inline; filename=SHA256SUMS",
            "Cache-Control": "private, no-store",
        },
    )


def _part_number(request: web.Request) -> int:
    raw = request.match_info["n"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6 or int(raw) < 1:
        raise not_found(
            f"There is no part {raw[:20]!r}: parts are numbered 1, 2, 3…", code=Code.PART_NOT_FOUND
        )
    return int(raw)


async def download_part(request: web.Request) -> web.StreamResponse:
    export_id, number, by = path_uuid(request), _part_number(request), request[PRINCIPAL]
    return await download(
        request,
        lambda pool, files: service.part_download(pool, files, export_id, number, by),
        Code.EXPORT_EXPIRED,
    )


_ID = Param("id", {"type": "string", "format": "uuid"}, "The export's id", location="path")
_N = Param(
    "n", {"type": "integer", "minimum": 1}, "The part's number (1 = the newest posts)",
    location="path",
)  # fmt: skip
_ONE = (Code.EXPORT_OWNER_ONLY, Code.INVALID_ID, Code.EXPORT_NOT_FOUND)
_OWNER_ONLY = {
    403: "A moderator's `target_sqid` naming another user: exports are the owner's alone"
}


_PART_ANSWERS = zip_answers(
    "makapix-export-…-part-N-of-M.zip (an archive: makapix-archive-…)",
    "part",
    (Code.EXPORT_OWNER_ONLY, Code.EXPORT_NOT_FOUND, Code.PART_NOT_FOUND, Code.PART_NOT_READY,
     Code.PART_NO_FILE, Code.EXPORT_EXPIRED),
    not_ready=Code.PART_NOT_READY,
)  # fmt: skip
_PART_ANSWERS["problems"] = (403, *_PART_ANSWERS["problems"])
_PART_ANSWERS["problem_notes"] |= _OWNER_ONLY

ENDPOINTS = (
    Endpoint(
        "post", "/api/pmd/exports", create_export, "createExport",
        "Export every artwork (hidden ones included) in parts, each a BagIt bag or an "
        "account archive other sites import, in a ZIP",
        "exports", ok_status=202, ok_description="Accepted: the export is queued",
        request=ExportRequest, response=ExportItem, problems=(403, 409, 422, 429, 503),
        codes=(Code.TARGET_MISMATCH, Code.EXPORT_OWNER_ONLY, Code.INVALID_PART_SIZE,
               Code.INVALID_SINCE, Code.INVALID_SCHEDULE, Code.INVALID_LAYOUT, Code.EXPORT_RUNNING,
               Code.EXPORT_SCHEDULED, Code.EXPORT_COOLDOWN, Code.NOTHING_TO_EXPORT,
               Code.LOW_DISK_SPACE),
        problem_notes={
            400: "`part_bytes` outside [EXPORT_MIN_PART_BYTES, EXPORT_MAX_PART_BYTES] (the "
                 "bounds are in the answer), a `since` that is neither `last` nor the id of an "
                 "export of yours that reached ready (one cancelled, failed or still running "
                 "is refused: `since_status` says which, `followable_export_id` names the "
                 "newest you can follow), `repeat_every_days` or `repeat_times` out of "
                 "bounds or one without the other (or with `since`), a `layout` other than "
                 "`bagit` or `activitypub`, or an invalid body",
            409: "An export of this user is already pending or processing: `export_id` and "
                 "`progress` name it; or, with `repeat_every_days`, a schedule already runs",
            422: "The user has no artwork to export",
            429: "Within EXPORT_COOLDOWN_SECONDS of the last full export that counts (any "
                 "but a failed one, even removed since, or one cancelled before any part was "
                 "ready), or, with `since`, within EXPORT_INCREMENTAL_COOLDOWN_SECONDS of the "
                 "last export of any kind that counts; see Retry-After. A bad `part_bytes` or "
                 "`since` is a 400 first, whatever the state (409, 429)",
            503: "The parts' file system is short of free space (ZIP_MIN_FREE_BYTES); see "
                 "Retry-After",
            **_OWNER_ONLY,
        },
        headers={"Location": "The new export's URL"},
        other_responses=(
            (200, "With `since`: nothing changed since that export started, so no export was "
             "made", "application/json"),
        ),
        other_schemas={200: NothingChanged},
    ),
    Endpoint("get", "/api/pmd/exports", list_exports, "listExports", "The 20 newest exports",
             "exports", response=ExportList, problems=(403,), problem_notes=_OWNER_ONLY,
             codes=(Code.EXPORT_OWNER_ONLY,)),
    Endpoint("delete", "/api/pmd/exports/schedule", delete_schedule, "cancelExportSchedule",
             "Cancel the recurring export: no later export starts (those made stay)", "exports",
             ok_status=204, ok_description="Cancelled", problems=(403, 404),
             codes=(Code.EXPORT_OWNER_ONLY, Code.SCHEDULE_NOT_FOUND),
             problem_notes=_OWNER_ONLY | {404: "No recurring export is scheduled"}),
    Endpoint("get", "/api/pmd/exports/{id}", get_export, "getExport", "One export", "exports",
             response=ExportItem, params=(_ID,), problems=(403, 404), problem_notes=_OWNER_ONLY,
             codes=_ONE),
    Endpoint("delete", "/api/pmd/exports/{id}", delete_export, "deleteExport",
             "Cancel a running export, or remove the parts of a finished one", "exports",
             ok_status=204,
             ok_description="Cancelled, or removed (then `expired` with `removed_at` set); no "
             "part file is left",
             params=(_ID,), problems=(403, 404), problem_notes=_OWNER_ONLY, codes=_ONE),
    Endpoint("get", "/api/pmd/exports/{id}/SHA256SUMS", export_sha256sums, "exportSha256sums",
             "Every ready part's SHA-256 and file name, in `sha256sum` format: "
             "`sha256sum -c SHA256SUMS` where the parts were saved checks them all",
             "exports", response_media="text/plain", params=(_ID,), problems=(403, 404),
             problem_notes=_OWNER_ONLY, auth=Auth.BEARER_OR_TICKET, query=DownloadQuery, codes=_ONE),
    Endpoint("get", "/api/pmd/exports/{id}/parts/{n}/download", download_part,
             "downloadExportPart", "One part's ZIP (Range supported): downloadable as soon as "
             "it is ready, while later parts are still built", "exports",
             response_media="application/zip", auth=Auth.BEARER_OR_TICKET, query=DownloadQuery,
             ok_description="The whole part: no Range, or one that is ignored",
             params=(_ID, _N, *DOWNLOAD_PARAMS),
             **_PART_ANSWERS),
)  # fmt: skip

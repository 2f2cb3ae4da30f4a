"""A request for ZIPs (`zip_request`), and a ready ZIP served (`download`): a redirect to a
signed URL, or its bytes from a local file or the bucket, with conditions and one byte range."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Protocol, TypeVar

import asyncpg
import msgspec
from aiohttp import ETag, hdrs, web
from msgspec import Meta

from ..core.codes import TABLE, Code
from ..core.problems import ProblemError, gone
from ..host.access import Principal
from ..storage.budget import ensure_free_space
from ..storage.zip_files import OBJECT_MISSING, StoredZip, StoreFailed, ZipFiles, repr_digest
from . import request_ids
from .auth import retarget
from .declaration import Param
from .keys import DB_POOL, PRINCIPAL, PROXY_SLOTS, SETTINGS, STREAM_RESPONSE, ZIP_FILES
from .problem_responses import client_went_away
from .validation import read_json

if TYPE_CHECKING:
    from asyncio import Transport
    from pathlib import Path

    from obstore import GetResult

log = logging.getLogger(__name__)
NO_STORE = {"Cache-Control": "private, no-store"}

# Above aiohttp's 64 KiB write limit, so every write of a proxied download waits for the client.
READ_CHUNK = 128 * 1024
# A local file's largest sendfile step, which a client must take within ZIP_PROXY_IDLE_SECONDS.
SENDFILE_MAX_STEP = 2**20


# RFC 9110's DIGIT is ASCII only (`\d` also takes "٤" and the like, and int() reads them).
_RANGE_SPEC = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)")
# The conditions `_plan` answers, as a download's parameters describe them.
_CONDITIONS = {
    "Range": "One byte range (`bytes=0-1023`, `bytes=1024-`, `bytes=-512`); several ranges, "
    "or an invalid one, are answered with the whole file",
    "If-Range": "Serve the range only if the file still has this ETag or Last-Modified date",
    "If-Match": "412 unless the ZIP has one of these ETags (`*`: any)",
    "If-Unmodified-Since": "412 when the ZIP changed after this HTTP date (ignored with If-Match)",
    "If-None-Match": "304 when the ZIP has one of these ETags (`*`: any)",
    "If-Modified-Since": "304 when the ZIP has not changed since this HTTP date (ignored with "
    "If-None-Match)",
}


def _plan(request: web.Request, stored: StoredZip) -> tuple[int, range]:
    """The status the conditions and Range call for (RFC 9110 §13.2.2 order), 200, 206 or 304,
    and the bytes to send; raises 412, 416."""
    etag, modified = stored.etag, _seconds(stored.last_modified)
    if_match = request.if_match
    if if_match is not None and not _matches(etag, if_match, weak=False):
        raise _precondition_failed(request, stored, hdrs.IF_MATCH)
    since = request.if_unmodified_since
    if if_match is None and since is not None and modified > since.timestamp():
        raise _precondition_failed(request, stored, hdrs.IF_UNMODIFIED_SINCE)
    if_none_match = request.if_none_match
    if if_none_match is not None and _matches(etag, if_none_match, weak=True):
        return 304, range(0)
    since = request.if_modified_since
    if if_none_match is None and since is not None and modified <= since.timestamp():
        return 304, range(0)
    span = _byte_range(request, stored) if _if_range_holds(request, stored) else None
    return (200, range(stored.size)) if span is None else (206, span)


def _seconds(when: datetime) -> int:
    # HTTP dates have whole seconds, rounded up as aiohttp rounds a file's mtime.
    return math.ceil(when.timestamp())


def _matches(etag: str, tags: tuple[ETag, ...], *, weak: bool) -> bool:
    if len(tags) == 1 and tags[0].value == "*":  # any ETag: the ZIP exists
        return True
    value = etag.removeprefix("W/").strip('"')
    return any(tag.value == value for tag in tags if weak or not tag.is_weak)


def _if_range_holds(request: web.Request, stored: StoredZip) -> bool:
    """Whether the Range applies: no If-Range, or one naming this version exactly (§13.1.5)."""
    value = request.headers.get(hdrs.IF_RANGE)
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == stored.etag  # a weak tag never matches
    date = request.if_range
    return date is not None and date.timestamp() == _seconds(stored.last_modified)


def _byte_range(request: web.Request, stored: StoredZip) -> range | None:
    """The one range asked for; None for the whole ZIP (RFC 9110 §14.2)."""
    unit, equals, spec = request.headers.get(hdrs.RANGE, "").partition("=")
    if not equals or unit.strip(_OWS).lower() != "bytes":
        return None
    found = _RANGE_SPEC.fullmatch(spec.strip(_OWS))
    if found is None:
        return None  # several ranges (not served as multipart), or not a range at all
    first, last, suffix = found.groups()
    size = stored.size
    if suffix is not None:
        if _number(suffix) == (1, "0"):  # the last 0 bytes: no byte at all (§14.1.3)
            raise _unsatisfiable(request, size)
        return range(size - _at_most(suffix, size), size)
    if last and _number(last) < _number(first):
        return None
    start = _at_most(first, size)
    if start >= size:  # past the end, however far
        raise _unsatisfiable(request, size)
    return range(start, size if not last else _at_most(last, size - 1) + 1)


_OWS = " \t"


def _number(digits: str) -> tuple[int, str]:
    """A key ordering digit strings as numbers, of any length (int() refuses very long ones)."""
    digits = digits.lstrip("0") or "0"
    return len(digits), digits


def _at_most(digits: str, limit: int) -> int:
    """min(int(digits), limit), reading no more digits than `limit` has."""
    number = _number(digits)
    return limit if number > _number(str(limit)) else int(number[1])


def _unsatisfiable(request: web.Request, size: int) -> ProblemError:
    return ProblemError(
        416,
        "range-not-satisfiable",
        "Range Not Satisfiable",
        f"`Range: {_quoted(request, hdrs.RANGE)}` asks for no byte of the ZIP's "
        f"{size} bytes (ask for `bytes=0-{max(size - 1, 0)}` or a part of it).",
        headers={"Content-Range": f"bytes */{size}"},
        code=Code.RANGE_NOT_SATISFIABLE,
        details={"size_bytes": size},
    )


def _quoted(request: web.Request, header: str) -> str:
    """A header's value for a problem's detail: its start only (a Range may be 8 KB)."""
    value = request.headers.get(header, "").strip()
    return value if len(value) <= 80 else value[:80] + "…"


def _precondition_failed(request: web.Request, stored: StoredZip, header: str) -> ProblemError:
    return ProblemError(
        412,
        "precondition-failed",
        "Precondition Failed",
        f"`{header}: {_quoted(request, header)}` does not hold: the ZIP is now "
        f"ETag {stored.etag}, last modified {_http_date(stored.last_modified)}. Download it "
        "again without the condition.",
        headers={hdrs.ETAG: stored.etag},
        code=Code.PRECONDITION_FAILED,
    )


def _http_date(when: datetime) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(_seconds(when)))


def _validators(stored: StoredZip) -> dict[str, str]:
    return {
        hdrs.ETAG: stored.etag,
        hdrs.LAST_MODIFIED: _http_date(stored.last_modified),
        hdrs.ACCEPT_RANGES: "bytes",
    }


def _gone(code: Code) -> ProblemError:
    """A file removed since it was found (expired, removed by its owner)."""
    return gone("This ZIP is no longer available; request it again.", code=code)


async def _send_file(
    request: web.Request,
    response: web.StreamResponse,
    path: Path,
    span: range,
    lost: Code,
) -> None:
    try:
        file = await open_in_thread(path)
    except FileNotFoundError:
        raise _gone(lost) from None
    try:
        request[STREAM_RESPONSE] = response  # before any byte can fail to go out
        await response.prepare(request)
        await _sendfile(request, response, file, span)
    finally:
        file.close()  # a reader's close writes nothing back: it cannot block the loop


async def open_in_thread(path: Path) -> BinaryIO:
    """`path` opened off the event loop; closed by the thread if the caller is cancelled."""
    opening = _Opening()
    try:
        return await asyncio.to_thread(opening.open, path)
    except asyncio.CancelledError:
        opening.abandon()
        raise


class _Opening:
    """A file opened in a thread: whichever comes second, the open or the abandonment, closes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._file: BinaryIO | None = None

    def open(self, path: Path) -> BinaryIO:
        file = path.open("rb")
        with self._lock:
            if not self._abandoned:
                self._file = file
                return file
        file.close()
        raise asyncio.CancelledError

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            file, self._file = self._file, None
        if file is not None:
            file.close()


async def _sendfile(
    request: web.Request,
    response: web.StreamResponse,
    file: BinaryIO,
    span: range,
) -> None:
    """The file's bytes in `span` by sendfile in steps, so an idle client can be cut off."""
    idle_seconds = request.app[SETTINGS].zip_proxy_idle_seconds
    transport = _transport(request)
    loop = asyncio.get_running_loop()
    sent, total, step = 0, len(span), READ_CHUNK
    try:
        while sent < total:
            size = min(step, total - sent)
            began = loop.time()
            try:
                async with asyncio.timeout(idle_seconds):
                    await loop.sendfile(transport, file, span.start + sent, size)
            except TimeoutError:
                _cut_off(request, transport, idle_seconds, f"{sent} of {total}")
                return
            sent += size
            # Larger steps for a client that keeps up: each sendfile call costs CPU.
            took = loop.time() - began
            if took < idle_seconds / 16:
                step = min(step * 2, SENDFILE_MAX_STEP)
            elif took > idle_seconds / 4:
                step = max(step // 2, READ_CHUNK)
        await response.write_eof()
    except ConnectionError as exc:
        traceback.clear_frames(exc.__traceback__)  # as in _relay: no cycle holds the frames
        client_went_away(request, f"left after {sent} of {total} bytes")


def _transport(request: web.Request) -> Transport:
    if request.transport is None:
        raise ConnectionResetError("the client left before the first byte")
    return request.transport


def _cut_off(request: web.Request, transport: Transport, idle_seconds: float, sent: str) -> None:
    """A client that took no byte for `idle_seconds`: its unsent bytes would never go."""
    transport.abort()
    client_went_away(request, f"took no byte for {idle_seconds:g} s; cut off after {sent} bytes")


async def _proxy(
    request: web.Request,
    response: web.StreamResponse,
    files: ZipFiles,
    stored: StoredZip,
    span: range,
    lost: Code,
) -> None:
    with request.app[PROXY_SLOTS].hold(request[PRINCIPAL].caller.id):
        try:
            result = await files.read(stored, span.start, span.stop)
        except OBJECT_MISSING:
            raise _gone(lost) from None
        request[STREAM_RESPONSE] = response
        await response.prepare(request)
        await _relay(request, response, files, result)


async def _pieces(
    chunks: AsyncIterator[memoryview], size: int
) -> AsyncIterator[bytearray | memoryview]:
    """The chunks' bytes in pieces of exactly `size`, the last one shorter: aiohttp lets a
    write under its 64 KiB limit pass without waiting, so a short piece would let two wait."""
    carry = bytearray()
    async for chunk in chunks:
        at = min(len(chunk), size - len(carry)) if carry else 0
        carry += chunk[:at]
        if len(carry) == size:
            yield carry
            carry = bytearray()  # the one written may still wait in the transport's buffer
        whole = at + (len(chunk) - at) // size * size
        for start in range(at, whole, size):
            yield chunk[start : start + size]
        carry += chunk[whole:]
    if carry:
        yield carry


async def _relay(
    request: web.Request,
    response: web.StreamResponse,
    files: ZipFiles,
    result: GetResult,
) -> None:
    idle_seconds = request.app[SETTINGS].zip_proxy_idle_seconds
    transport = _transport(request)
    # Every write then waits for an empty buffer: a client that stops reading stops the store.
    transport.set_write_buffer_limits(high=0)
    sent = 0
    total = response.content_length or 0
    try:
        async for piece in _pieces(files.chunks(result, READ_CHUNK), READ_CHUNK):
            try:
                async with asyncio.timeout(idle_seconds):
                    await response.write(piece)
            except TimeoutError:
                _cut_off(request, transport, idle_seconds, f"{sent} of {total}")
                return
            sent += len(piece)
        await response.write_eof()
    except StoreFailed as exc:
        # The client must see a short body, not a complete-looking one: close without EOF.
        transport.abort()
        log.warning(
            "%s %s: the object store failed mid-body (%s); cut off after %d of %d bytes",
            request.method,
            request.path,
            exc,
            sent,
            total,
        )
    except ConnectionError as exc:
        # Its traceback's frames form a cycle with the drain future that would keep the chunk.
        traceback.clear_frames(exc.__traceback__)
        client_went_away(request, f"left after {sent} of {total} bytes")
    finally:
        if not transport.is_closing():
            transport.set_write_buffer_limits()  # asyncio's defaults, for its next request


class _Targeting(Protocol):
    @property
    def target_sqid(self) -> str | None: ...


Body = TypeVar("Body", bound=_Targeting)


async def zip_request(request: web.Request, struct: type[Body]) -> tuple[Body, Principal, str]:
    """A request for ZIPs: its body, whom it acts for, its request id; 503 when short of space."""
    body = await read_json(request, struct)
    principal = await retarget(request, body.target_sqid)
    await ensure_free_space(request.app[SETTINGS])
    return body, principal, request_ids.current()


# A ZIP found for the caller: where it is, its file name and its hex SHA-256 (None: the host's).
Found = tuple[StoredZip, str, str | None]


async def download(
    request: web.Request,
    find: Callable[[asyncpg.Pool, ZipFiles], Awaitable[Found]],
    gone: Code,
) -> web.StreamResponse:
    """A ZIP download: `find` gets the caller's ZIP or raises; `gone` is the code of a lost file."""
    settings, files = request.app[SETTINGS], request.app[ZIP_FILES]
    # Full proxy slots refuse a download before the database or the store is asked anything.
    proxied = settings.zip_store is not None and settings.zip_download_mode == "proxy"
    if proxied and request.method == "GET":
        request.app[PROXY_SLOTS].check(request[PRINCIPAL].caller.id)
    stored, filename, sha256 = await find(request.app[DB_POOL], files)
    if stored.key is not None and settings.zip_download_mode == "redirect":
        # The object carries the file name (Content-Disposition, set at upload).
        url = await files.signed_url(stored, "HEAD" if request.method == hdrs.METH_HEAD else "GET")
        return web.Response(status=302, headers={"Location": url, **NO_STORE})
    status, span = _plan(request, stored)
    if status == 304:
        return web.Response(status=304, headers={**_validators(stored), **NO_STORE})
    headers = {
        "Content-Type": "application/zip",
        "Content-Disposition": f"attachment; filename={filename}",
        **NO_STORE,
        **repr_digest(sha256),
        **_validators(stored),
    }
    response = web.StreamResponse(status=status, headers=headers)
    if status == 206:
        response.headers[hdrs.CONTENT_RANGE] = f"bytes {span.start}-{span.stop - 1}/{stored.size}"
    response.content_length = len(span)
    if request.method == hdrs.METH_HEAD or not span:
        await response.prepare(request)
        await response.write_eof()
    elif stored.path is not None:
        await _send_file(request, response, stored.path, span, gone)
    else:
        await _proxy(request, response, files, stored, span, gone)
    return response


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


# The headers a ZIP download answers to (a BDR's, or an export part's).
DOWNLOAD_PARAMS = tuple(Param(name, {"type": "string"}, text) for name, text in _CONDITIONS.items())


def zip_answers(
    filename: str, what: str, codes: tuple[Code, ...], not_ready: Code
) -> dict[str, Any]:
    """A ZIP download's answers as Endpoint arguments; `what` names it ("download", "part")."""
    unready = f"The {what} is not ready (still being built), or was never built"
    if TABLE[not_ready].status == 400:
        unready = f"The id is not a UUID, or the {what} is not ready (still being built) or was never built"
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
        "problems": (404, 410, 412, 416, 429, 503),
        "codes": (
            Code.INVALID_ID,
            *codes,
            Code.PRECONDITION_FAILED,
            Code.RANGE_NOT_SATISFIABLE,
            Code.TOO_MANY_DOWNLOADS,
            Code.DOWNLOADS_BUSY,
            Code.STORE_UNAVAILABLE,
        ),
        "problem_notes": {
            TABLE[not_ready].status or 0: unready,
            410: f"The {what} expired or was removed, or its file is gone",
            412: "If-Match or If-Unmodified-Since does not hold for the ZIP; `ETag` is "
            "the ZIP's now",
            416: "The one range asked for holds no byte of the ZIP (it starts at or past "
            "the end, or is `bytes=-0`); `Content-Range: bytes */<size>`",
            429: "Proxy mode: ZIP_PROXY_MAX_PER_USER downloads of the caller are already "
            "streaming from this server; see Retry-After",
            503: "The object store did not answer within STORE_TIMEOUT_SECONDS, or (proxy "
            "mode) this server streams ZIP_PROXY_MAX_DOWNLOADS downloads already; "
            "see Retry-After",
        },
        # Several ranges get a 200 with the whole ZIP, never multipart/byteranges.
        "other_responses": (
            (206, "The one byte range asked for (If-Range, if sent, holds)", "application/zip"),
            (
                304,
                "Not modified: If-None-Match (`*` included) or If-Modified-Since matches the ZIP",
                None,
            ),
            (
                302,
                "With ZIP_STORE in a bucket (and ZIP_DOWNLOAD_MODE=redirect): `Location` is "
                "a signed URL of the ZIP, valid ZIP_SIGNED_URL_SECONDS",
                None,
            ),
        ),
        "status_headers": {
            206: {
                **zip_headers,
                "Content-Range": "`bytes <first>-<last>/<size>`: where this part lies in the ZIP",
            },
            304: validators,
            302: {
                "Location": "A signed URL of the ZIP (conditions and ranges are the "
                "store's to answer there)",
                "Cache-Control": "`private, no-store`",
            },
            412: {"ETag": "The ZIP's entity tag now"},
            416: {"Content-Range": "`bytes */<size>`: the ZIP's size"},
        },
    }

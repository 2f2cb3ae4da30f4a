"""Serving a ZIP kept in a bucket: a redirect to a signed URL, or streamed through (proxy mode).

Redirect is the default: the browser fetches the bytes from the store, and the server's part is
one small response. Proxy mode is for stores the browser cannot reach; it answers Range,
If-Range, ETag and HEAD as the local FileResponse does, reading from the store as it sends
(memory: one chunk, whatever the ZIP's size).
"""

from __future__ import annotations

from collections.abc import Mapping

import obstore
from aiohttp import hdrs, web

from ..bdr.files import OBJECT_MISSING, StoredZip, ZipFiles, store_unavailable
from ..core.problems import ProblemError, gone

READ_CHUNK = 1 << 20


async def redirect(request: web.Request, files: ZipFiles, stored: StoredZip) -> web.Response:
    url = await files.signed_url(stored, "HEAD" if request.method == hdrs.METH_HEAD else "GET")
    return web.Response(status=302, headers={"Location": url, "Cache-Control": "private, no-store"})


def _byte_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """[start, end) of the one range asked for, None for the whole object."""
    try:
        asked = request.http_range
    except ValueError:
        raise _unsatisfiable(request, size) from None
    start, stop = asked.start, asked.stop
    if start is None and stop is None:
        return None
    if start is not None and start < 0:  # a suffix: the last -start bytes
        start, stop = max(size + start, 0), size
    start = start or 0
    stop = size if stop is None else min(stop, size)
    if start >= size or start >= stop:
        raise _unsatisfiable(request, size)
    return start, stop


def _unsatisfiable(request: web.Request, size: int) -> ProblemError:
    return ProblemError(
        416,
        "range-not-satisfiable",
        "Range Not Satisfiable",
        f"`Range: {request.headers.get('Range', '').strip()}` asks for no byte of the ZIP's "
        f"{size} bytes (ask for `bytes=0-{max(size - 1, 0)}` or a part of it).",
        headers={"Content-Range": f"bytes */{size}"},
    )


async def proxy(
    request: web.Request,
    files: ZipFiles,
    stored: StoredZip,
    headers: Mapping[str, str],
    *,
    whole: bool,
) -> web.StreamResponse:
    assert files.store is not None and stored.key is not None
    size = stored.size
    validators = {
        hdrs.ETAG: stored.etag,
        hdrs.LAST_MODIFIED: stored.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        hdrs.ACCEPT_RANGES: "bytes",
    }
    if stored.etag in _etags(request.headers.get(hdrs.IF_NONE_MATCH, "")):
        return web.Response(status=304, headers=validators)
    span = None if whole else _byte_range(request, size)
    response = web.StreamResponse(status=200 if span is None else 206, headers=headers)
    response.headers.update(validators)
    start, stop = span or (0, size)
    if span is not None:
        response.headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{stop - 1}/{size}"
    response.content_length = stop - start
    if request.method == hdrs.METH_HEAD or stop == start:
        await response.prepare(request)
        await response.write_eof()
        return response
    # The ETag pins the version: if the object was replaced meanwhile, the read fails rather
    # than splicing two files into one download.
    try:
        result = await obstore.get_async(
            files.store, stored.key, options={"range": (start, stop), "if_match": stored.etag}
        )
    except OBJECT_MISSING:  # deleted since the HEAD (expired, removed by its owner)
        raise gone("This download's file is no longer available; request a new download.") from None
    except (obstore.exceptions.BaseError, OSError) as exc:
        raise store_unavailable(exc) from None
    await response.prepare(request)
    async for chunk in result.stream(min_chunk_size=READ_CHUNK):
        await response.write(chunk)
    await response.write_eof()
    return response


def _etags(header: str) -> set[str]:
    return {tag.strip() for tag in header.split(",") if tag.strip()}

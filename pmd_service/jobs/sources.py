"""Where artwork bytes come from: the vault on disk, or ARTWORK_BASE_URL over HTTP.

Only the configured origin is ever fetched, with paths built from validated parts: never a URL
taken from a row (the seed fetched `art_url` as given).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path

import aiohttp

from ..vault import VaultPathError, artwork_path, relative_artwork_path
from .archive_content import Artwork
from .zipbuild import Entry

log = logging.getLogger(__name__)

FETCH_ATTEMPTS = 3
# An artwork larger than this is not an artwork: refuse it rather than hold it in memory.
MAX_ARTWORK_BYTES = 64 << 20
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10, sock_read=30)


def _arcname(artwork: Artwork) -> str:
    return f"artworks/{artwork.filename}"


def vault_entries(vault: Path, artworks: list[Artwork]) -> Iterator[Entry]:
    """Paths only, resolved lazily: the build thread iterates this, so the path checks (which
    stat the filesystem, maybe a network one) never run on the event loop."""
    for a in artworks:
        try:
            path = artwork_path(vault, a.storage_shard, a.storage_key, a.fmt)
        except VaultPathError:
            log.warning("post %s has storage parts that leave the vault; skipped", a.post_id)
            yield Entry(a.post_id, _arcname(a), skip_reason="file_missing")
            continue
        yield Entry(a.post_id, _arcname(a), path=path)


async def _fetch(session: aiohttp.ClientSession, base_url: str, artwork: Artwork) -> Entry:
    arcname = _arcname(artwork)
    try:
        url = f"{base_url}/{relative_artwork_path(artwork.storage_shard, artwork.storage_key, artwork.fmt)}"
    except VaultPathError:
        return Entry(artwork.post_id, arcname, skip_reason="file_missing")
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            async with session.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False) as resp:
                if resp.status == 404:
                    return Entry(artwork.post_id, arcname, skip_reason="file_missing")
                if resp.status == 200:
                    if (resp.content_length or 0) > MAX_ARTWORK_BYTES:
                        log.warning(
                            "fetch %s: %s bytes is over the limit", url, resp.content_length
                        )
                        return Entry(artwork.post_id, arcname, skip_reason="fetch_failed")
                    data = await resp.content.read(MAX_ARTWORK_BYTES + 1)
                    if len(data) > MAX_ARTWORK_BYTES or not resp.content.at_eof():
                        log.warning("fetch %s: body over %d bytes", url, MAX_ARTWORK_BYTES)
                        return Entry(artwork.post_id, arcname, skip_reason="fetch_failed")
                    return Entry(artwork.post_id, arcname, data=data)
                log.warning("fetch %s: HTTP %s (attempt %d)", url, resp.status, attempt)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("fetch %s: %s (attempt %d)", url, exc, attempt)
        if attempt < FETCH_ATTEMPTS:
            await asyncio.sleep(0.5 * 2 ** (attempt - 1))
    return Entry(artwork.post_id, arcname, skip_reason="fetch_failed")


async def fetched_in_order(
    session: aiohttp.ClientSession, base_url: str, artworks: list[Artwork], concurrency: int
) -> AsyncGenerator[Entry, None]:
    """Fetch up to `concurrency` ahead, yield in request order whatever order they finish in.

    The window also bounds memory: at most `concurrency` artworks are held at once.
    """
    pending = iter(artworks)
    window: deque[asyncio.Task[Entry]] = deque()
    try:
        for artwork in pending:
            window.append(asyncio.create_task(_fetch(session, base_url, artwork)))
            if len(window) >= concurrency:
                break
        while window:
            entry = await window.popleft()
            following = next(pending, None)
            if following is not None:
                window.append(asyncio.create_task(_fetch(session, base_url, following)))
            yield entry
    finally:
        for task in window:
            task.cancel()
        await asyncio.gather(*window, return_exceptions=True)


def bridge_to_thread(
    source: AsyncIterator[Entry], loop: asyncio.AbstractEventLoop
) -> Iterator[Entry]:
    """A blocking iterator for the build thread over an async source running on `loop`."""
    while True:
        future = asyncio.run_coroutine_threadsafe(anext(source, None), loop)
        entry = future.result()
        if entry is None:
            return
        yield entry

"""Where artwork bytes come from: the vault on disk, ARTWORK_BASE_URL over HTTP, or the
ARTWORK_STORE bucket; only at paths built from validated parts, never a URL taken from a row."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import obstore
import yarl

from ..host.vault import VaultFiles, VaultPathError, relative_artwork_path
from ..storage.zip_files import OBJECT_MISSING
from .build import Deriving, Entry
from .content import Artwork
from .working_files import entry_id, palette_of, relative_path

if TYPE_CHECKING:
    from obstore.store import ObjectStore

log = logging.getLogger(__name__)

FETCH_ATTEMPTS = 3
# An artwork larger than this is not an artwork: refuse it rather than hold it in memory.
MAX_ARTWORK_BYTES = 64 << 20
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10, sock_read=30)


def _arcname(artwork: Artwork) -> str:
    return f"{artwork.folder}/{artwork.filename}"


def vault_entries(vault: Path, artworks: list[Artwork]) -> Iterator[Entry]:
    """Paths only, resolved lazily on the build thread (the checks stat the filesystem)."""
    files = VaultFiles(vault.resolve())
    for a in artworks:
        try:
            path = files.artwork(a.storage_shard, a.storage_key, a.fmt)
        except VaultPathError:
            log.warning("post %s has storage parts that leave the vault; skipped", a.post_id)
            yield Entry(a.post_id, _arcname(a), skip_reason="file_missing")
            continue
        yield Entry(a.post_id, _arcname(a), path=path, derived=_palette(a))
        for working in a.working:  # a missing one is skipped by the builder (file_missing)
            entry = entry_id(a.post_id, working.kind)
            try:
                path = files.file(relative_path(working.kind, a.storage_shard, a.storage_key))
            except VaultPathError:
                yield Entry(entry, working.arcname, skip_reason="file_missing")
            else:
                yield Entry(entry, working.arcname, path=path)


def _palette(a: Artwork) -> Deriving | None:
    """Its palette, made from the image's bytes as they are written, when one is asked for."""
    if a.palette is None:
        return None
    name = f"{a.title} ({a.sqid})" if a.title.strip() else a.sqid
    return palette_of(a.post_id, _arcname(a), a.palette, name)


class _TooLarge(Exception):
    """The body passed MAX_ARTWORK_BYTES: refused at once, never retried."""


async def _read_capped(resp: aiohttp.ClientResponse, url: str) -> bytes:
    """The whole body up to EOF (one cut short raises), at most MAX_ARTWORK_BYTES of it."""
    cap = MAX_ARTWORK_BYTES
    if resp.content_length is not None and resp.content_length > cap:
        raise _TooLarge(f"fetch {url}: Content-Length {resp.content_length} is over {cap} bytes")
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > cap:  # no Content-Length (chunked) or a lying one: stop reading now
            raise _TooLarge(f"fetch {url}: body over {cap} bytes")
    return bytes(body)


# An artwork's entries: its image, then its working files.
Fetch = Callable[[Artwork], Awaitable[list[Entry]]]
# One file by its path relative to the vault -> its entry (entry id, arcname, path).
Read = Callable[[int, str, str], Awaitable[Entry]]


async def _entries(artwork: Artwork, read: Read) -> list[Entry]:
    """An artwork's image, then its working files, each `read` by its path in the vault."""
    arcname = _arcname(artwork)
    try:
        path = relative_artwork_path(artwork.storage_shard, artwork.storage_key, artwork.fmt)
    except VaultPathError:
        return [Entry(artwork.post_id, arcname, skip_reason="file_missing")]
    image = await read(artwork.post_id, arcname, path)
    palette = _palette(artwork)
    if palette is not None and image.data is not None:
        image = dataclasses.replace(image, derived=palette)
    entries = [image]
    for working in artwork.working:
        try:
            rel = relative_path(working.kind, artwork.storage_shard, artwork.storage_key)
        except VaultPathError:  # the image's own path checked the same parts: never here
            continue
        entries.append(await read(entry_id(artwork.post_id, working.kind), working.arcname, rel))
    return entries


async def _fetch_file(
    session: aiohttp.ClientSession,
    base: str,
    headers: dict[str, str],
    entry: int,
    arcname: str,
    path: str,
) -> Entry:
    url = f"{base}/{path}"
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            async with session.get(
                url, headers=headers, timeout=FETCH_TIMEOUT, allow_redirects=False
            ) as resp:
                if resp.status == 404:
                    return Entry(entry, arcname, skip_reason="file_missing")
                if resp.status == 200:
                    return Entry(entry, arcname, data=await _read_capped(resp, url))
                log.warning("fetch %s: HTTP %s (attempt %d)", url, resp.status, attempt)
        except _TooLarge as exc:
            log.warning("%s; skipped", exc)
            return Entry(entry, arcname, skip_reason="fetch_failed")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("fetch %s: %s (attempt %d)", url, exc, attempt)
        if attempt < FETCH_ATTEMPTS:
            await asyncio.sleep(0.5 * 2 ** (attempt - 1))
    return Entry(entry, arcname, skip_reason="fetch_failed")


def http_reader(session: aiohttp.ClientSession, base_url: str) -> Read:
    """ARTWORK_BASE_URL without its user info, whose credentials go in an Authorization header."""
    parsed = yarl.URL(base_url)
    headers = {}
    if parsed.user is not None or parsed.password is not None:
        # yarl decodes the percent-encoding; UTF-8 as RFC 7617 recommends.
        pair = f"{parsed.user or ''}:{parsed.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    return partial(_fetch_file, session, str(parsed.with_user(None)).rstrip("/"), headers)


def object_reader(store: ObjectStore) -> Read:
    """Files from ARTWORK_STORE at `{prefix}/{relative path}` (the vault's layout)."""
    return partial(_get_file, store)


def http_fetcher(session: aiohttp.ClientSession, base_url: str) -> Fetch:
    return partial(_entries, read=http_reader(session, base_url))


def object_fetcher(store: ObjectStore) -> Fetch:
    """Artworks from ARTWORK_STORE at `{prefix}/{shard}/{key}.{ext}` (the vault's layout)."""
    return partial(_entries, read=object_reader(store))


async def _get_file(store: ObjectStore, entry: int, arcname: str, path: str) -> Entry:
    """obstore retries a failed request itself; what still fails is `fetch_failed`."""
    try:
        result = await obstore.get_async(store, path)
        size = result.meta["size"]
        if size > MAX_ARTWORK_BYTES:
            log.warning("object %s is %d bytes, over %d; skipped", path, size, MAX_ARTWORK_BYTES)
            return Entry(entry, arcname, skip_reason="fetch_failed")
        data = await result.bytes_async()
    except OBJECT_MISSING:
        return Entry(entry, arcname, skip_reason="file_missing")
    except (obstore.exceptions.BaseError, OSError) as exc:
        log.warning("read %s from the artwork store: %s", path, exc)
        return Entry(entry, arcname, skip_reason="fetch_failed")
    return Entry(entry, arcname, data=data.to_bytes())


async def fetched_in_order(
    fetch: Fetch, artworks: list[Artwork], concurrency: int
) -> AsyncGenerator[Entry, None]:
    """Fetch up to `concurrency` artworks ahead, yield their entries in request order."""
    pending = iter(artworks)
    window: deque[asyncio.Task[list[Entry]]] = deque()
    try:
        window.extend(asyncio.ensure_future(fetch(a)) for a in islice(pending, concurrency))
        while window:
            entries = await window.popleft()
            window.extend(asyncio.ensure_future(fetch(a)) for a in islice(pending, 1))
            for entry in entries:
                yield entry
    finally:
        for task in window:
            task.cancel()
        await asyncio.gather(*window, return_exceptions=True)


def bridge_to_thread(
    source: AsyncIterator[Entry], loop: asyncio.AbstractEventLoop
) -> Iterator[Entry]:
    """A blocking iterator for the build thread over an async source running on `loop`."""
    while entry := asyncio.run_coroutine_threadsafe(anext(source, None), loop).result():
        yield entry

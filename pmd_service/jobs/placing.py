"""Where one built ZIP goes, a BDR's or an export part's: a temp file renamed into place in
BDR_PATH, or a multipart upload into the BDR_STORE bucket. Either way it is published (the row
marked ready) only by the run that still owns its claim; what a run did not publish is removed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiofiles.os

from ..host.vault import bdr_object_key
from ..zipbuild.build import BuildResult, Sink, discard, file_sink, object_sink, publish
from .context import WorkerState
from .failures import TRANSIENT

if TYPE_CHECKING:
    from obstore import Attributes

log = logging.getLogger(__name__)

# Streams the ZIP into a sink (and raises if what was built must not be shipped).
Stream = Callable[[Sink], Awaitable[BuildResult]]
# Marks the row ready, running the move (the rename into place, None for an object) under its lock.
Publish = Callable[[BuildResult, Callable[[], None] | None], Awaitable[None]]


async def into_file(final: Path, temp: Path, stream: Stream, publish_: Publish) -> BuildResult:
    """Into BDR_PATH: a temp file beside the final name, fsynced, renamed when ready."""
    await aiofiles.os.makedirs(final.parent, exist_ok=True)
    try:
        result = await stream(file_sink(temp))
        await publish_(result, lambda: publish(temp, final))
    finally:
        await asyncio.to_thread(discard, temp)
    return result


async def into_object(
    st: WorkerState,
    what: str,
    file_path: str,
    attributes: Attributes,
    stream: Stream,
    publish_: Publish,
) -> BuildResult:
    """Into the bucket: a multipart upload under this run's own name (`file_path`), fed while
    the ZIP is built; the object exists only once complete, and the row points at it only when
    this run still owns the claim (a run that lost it deletes its object)."""
    store = st.zips.store
    assert store is not None
    sink = object_sink(store, bdr_object_key(file_path), attributes)
    published = False
    try:
        result = await stream(sink)
        await publish_(result, None)
        published = True
    finally:
        if not published:  # an object completed by a run that did not make it ready
            try:
                await st.zips.remove(file_path)
            except TRANSIENT:  # the cleanup removes it later; keep the run's own error
                log.warning("%s: could not remove %s", what, file_path)
    return result

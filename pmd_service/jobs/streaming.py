"""One archive streamed on a thread, watched from the event loop: progress and heartbeats
reported, a size cap enforced on what is written, a cancel passed on."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterable, Iterator

from ..zipbuild.build import BuildResult, Entry, Sink, Trailing, build
from ..zipbuild.json_files import Extras
from ..zipbuild.sources import (
    bridge_to_thread,
    fetched_in_order,
    http_fetcher,
    object_fetcher,
    vault_entries,
)
from .context import WorkerState
from .kind import Archive

PROGRESS_EVERY = 0.25  # at most four progress events a second reach SSE
HEARTBEAT_EVERY = 5.0
GATE_POLL = 0.5


class _Built:
    """How far the build thread got, read by the loop when it wakes (no hop per artwork)."""

    def __init__(self) -> None:
        self.done = 0

    def seen(self, done: int) -> None:
        self.done = done


def _gated(
    entries: Iterable[Entry], gate: threading.Event, cancel: threading.Event
) -> Iterator[Entry]:
    """Each artwork waits while `gate` is clear (a BDR goes first), or until a cancel."""
    for entry in entries:
        while not gate.wait(GATE_POLL) and not cancel.is_set():
            pass
        yield entry


async def stream_zip(st: WorkerState, archive: Archive, sink: Sink) -> BuildResult:
    """Build `archive` into `sink`, reporting progress at least every HEARTBEAT_EVERY."""
    settings = st.settings
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    extras = Extras(st.pool, loop, cancel, comments=archive.comments, reactions=archive.reactions)
    source = fetch = None
    if st.artwork_store is not None:
        fetch = object_fetcher(st.artwork_store)
    elif settings.artwork_base_url and st.http is not None:
        fetch = http_fetcher(st.http, settings.artwork_base_url)
    entries: Iterable[Entry]
    if fetch is not None:
        source = fetched_in_order(fetch, archive.artworks, settings.artwork_fetch_concurrency)
        entries = bridge_to_thread(source, loop)
    else:
        entries = vault_entries(settings.vault_path, archive.artworks)
    if archive.prefix:
        entries = (dataclasses.replace(e, arcname=archive.prefix + e.arcname) for e in entries)
    if archive.gate is not None:
        entries = _gated(entries, archive.gate, cancel)

    def trailing(added: list[int], skipped: list[tuple[int, str]]) -> list[tuple[str, Trailing]]:
        files = archive.trailing(extras, added, skipped)
        return [(archive.prefix + name, blob) for name, blob in files]

    built = _Built()
    progress = BuildResult(size=0, sha256="")  # its size grows as the ZIP is written
    task = asyncio.ensure_future(
        asyncio.to_thread(
            build, sink, entries, trailing, built.seen, cancel, progress, archive.closing
        )
    )
    reported, last_beat = -1, time.monotonic()
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=PROGRESS_EVERY)
            done = built.done
            # The files may be bigger than declared: the cap holds on what is written.
            error = archive.over_cap(progress.size, done)
            if error is not None:
                cancel.set()
                with contextlib.suppress(BaseException):
                    await task
                raise error
            now = time.monotonic()
            if task.done() or (done == reported and now - last_beat < HEARTBEAT_EVERY):
                continue
            still_ours = await archive.report(done)
            reported, last_beat = done, now
            if not still_ours:
                cancel.set()  # the build thread stops before the next artwork
        return await task
    finally:
        if not task.done():
            cancel.set()
            with contextlib.suppress(BaseException):
                await task
        await extras.aclose()  # the build thread has ended: no fetch of it is left to run
        if source is not None:
            await source.aclose()

"""One ZIP streamed on a thread from planned artworks, watched from the event loop: progress
and heartbeats reported, a size cap enforced on what is written, a cancel passed on. A BDR's
run (bdr/run.py) and an export's parts (exports/run.py) both build through here."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from ..zipbuild.build import BuildResult, Closing, Entry, Sink, Trailer, Trailing, build
from ..zipbuild.content import Artwork
from ..zipbuild.json_files import Extras
from ..zipbuild.sources import (
    bridge_to_thread,
    fetched_in_order,
    http_fetcher,
    object_fetcher,
    vault_entries,
)
from .context import WorkerState

PROGRESS_EVERY = 0.25  # at most four progress events a second reach SSE
HEARTBEAT_EVERY = 5.0
GATE_POLL = 0.5

# (artworks done) -> whether the run still owns its row (False: stop at the next artwork).
Report = Callable[[int], Awaitable[bool]]
# (bytes written so far, artworks done) -> an error to stop the build with, or None.
Cap = Callable[[int, int], Exception | None]


@dataclass(frozen=True)
class Job:
    """What to build: the artworks in order, the JSON files after them, the closing files, and
    a folder the artworks and JSON files go under (a bag's `…/data/`; "" for a BDR)."""

    artworks: list[Artwork]
    trailer: Callable[[Extras], Trailer]
    closing: Closing | None = None
    prefix: str = ""
    comments: bool = False
    reactions: bool = False


def _prefixed(entries: Iterable[Entry], prefix: str) -> Iterator[Entry]:
    for entry in entries:
        yield dataclasses.replace(entry, arcname=prefix + entry.arcname)


def _prefixed_trailer(trailer: Trailer, prefix: str) -> Trailer:
    def files(added: list[int], skipped: list[tuple[int, str]]) -> list[tuple[str, Trailing]]:
        return [(prefix + name, blob) for name, blob in trailer(added, skipped)]

    return files


def _gated(
    entries: Iterable[Entry], gate: threading.Event, cancel: threading.Event
) -> Iterator[Entry]:
    """Each artwork waits while `gate` is clear (a BDR is being built in this worker: it goes
    first); a cancel ends the wait, and the build stops at its next check."""
    for entry in entries:
        while not gate.wait(GATE_POLL) and not cancel.is_set():
            pass
        yield entry


async def stream_zip(
    st: WorkerState,
    job: Job,
    sink: Sink,
    report: Report,
    cap: Cap,
    gate: threading.Event | None = None,
) -> BuildResult:
    """Build `job` into `sink`, reporting progress (artworks done) at most every
    PROGRESS_EVERY and at least every HEARTBEAT_EVERY."""
    settings = st.settings
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    extras = Extras(st.pool, loop, cancel, comments=job.comments, reactions=job.reactions)
    source = None
    fetch = None
    if st.artwork_store is not None:
        fetch = object_fetcher(st.artwork_store)
    elif settings.artwork_base_url and st.http is not None:
        fetch = http_fetcher(st.http, settings.artwork_base_url)
    entries: Iterable[Entry]
    if fetch is not None:
        source = fetched_in_order(fetch, job.artworks, settings.artwork_fetch_concurrency)
        entries = bridge_to_thread(source, loop)
    else:
        entries = vault_entries(settings.vault_path, job.artworks)
    if job.prefix:
        entries = _prefixed(entries, job.prefix)
    if gate is not None:
        entries = _gated(entries, gate, cancel)
    trailer = job.trailer(extras)
    if job.prefix:
        trailer = _prefixed_trailer(trailer, job.prefix)

    # The build thread only records how far it got; the loop reads it when it wakes (every
    # PROGRESS_EVERY). A hop onto the loop per artwork woke it 128 times a job for nothing,
    # each wake-up taking the GIL from the build's threads.
    built = [0]

    def from_thread(n: int) -> None:
        built[0] = n

    progress = BuildResult(size=0, sha256="")  # its size grows as the ZIP is written
    task = asyncio.ensure_future(
        asyncio.to_thread(build, sink, entries, trailer, from_thread, cancel, progress, job.closing)
    )
    reported, last_beat = -1, time.monotonic()
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=PROGRESS_EVERY)
            done = built[0]
            # Declared sizes were checked before; the files may be bigger. The cap is enforced
            # on what is written, overshooting by one interval's writes at most.
            error = cap(progress.size, done)
            if error is not None:
                cancel.set()
                with contextlib.suppress(BaseException):
                    await task
                raise error
            now = time.monotonic()
            if task.done() or (done == reported and now - last_beat < HEARTBEAT_EVERY):
                continue
            still_ours = await report(done)
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

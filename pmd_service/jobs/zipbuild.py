"""Streaming a BDR ZIP with zipstream-ng, in a worker thread, to disk or an object store.

One awaited write per chunk on the event loop was several times slower than buffered writes
on a thread (figures in docs/benchmarks.md, "Measurements behind the code"). So the whole build
(file reads, CRC, writes) runs in one thread with plain buffered I/O, and sha256 in a second
one: the event loop only receives progress callbacks and is never blocked by file I/O or
hashing. Artworks are stored (they are compressed images already: DEFLATE gains next to
nothing), the JSON files deflated. Memory is one read buffer plus, for HTTP sources, the few
artworks fetched ahead: never the size of the ZIP.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from zipfile import ZIP_DEFLATED, ZIP_STORED

import obstore
from zipstream import ZipStream

if TYPE_CHECKING:
    from obstore import Attributes
    from obstore.store import ObjectStore

CHUNK = 1 << 20  # ~1 MiB reads and writes
WRITEBACK_EVERY = 16 << 20


class BuildCancelled(Exception):
    """The request was cancelled (or the run lost its claim) between two artworks."""


@dataclass(frozen=True)
class Entry:
    """One artwork to add: read from `path` in the build thread, or already-fetched `data`.

    `skip_reason` set means the source could not deliver it (e.g. an HTTP fetch failed).
    """

    post_id: int
    arcname: str
    path: Path | None = None
    data: bytes | None = None
    skip_reason: str | None = None


# A trailing JSON file: whole, or streamed as chunks (comments.json of 200,000 comments).
Trailing = bytes | Iterable[bytes]
# (added, skipped) -> the JSON files, made once the artworks are known.
Trailer = Callable[[list[int], list[tuple[int, str]]], Iterable[tuple[str, Trailing]]]


@dataclass
class BuildResult:
    size: int
    sha256: str
    added: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def _read_chunks(handle: object) -> Iterator[bytes]:
    read = handle.read  # type: ignore[attr-defined]
    while chunk := read(CHUNK):
        yield chunk


class _Hasher:
    """Hashes the chunks (sha256) on a second thread while they pass through on the build
    thread, so hashing overlaps with reading, CRC and writing: on two cores the build costs the
    slower of the two rather than their sum. The queue is bounded: at most QUEUE_DEPTH chunks
    wait in memory. (Writing on the hash thread instead gave that thread most of the work, and
    was slower.) `result.size` grows as chunks pass: the run reads it to enforce the size cap."""

    QUEUE_DEPTH = 8

    def __init__(self, result: BuildResult) -> None:
        self.result = result
        self.digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._hash, name="zip-sha256", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        update = self.digest.update
        while (chunk := self._queue.get()) is not None:
            update(chunk)

    def passing(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._queue.put(chunk)  # bytes are immutable: the hash thread may read it meanwhile
            self.result.size += len(chunk)
            yield chunk

    def stop(self) -> None:
        """End the hash thread, whether the build succeeded or not."""
        self._queue.put(None)
        self._thread.join()


def _batched(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Small chunks (headers, pixel-art files) joined to ~1 MiB, so each write, hash and upload
    call moves a lot of bytes; big ones pass as they are."""
    pending: list[bytes] = []
    pending_bytes = 0
    for chunk in chunks:
        if len(chunk) >= CHUNK // 2:
            if pending:
                yield b"".join(pending)
                pending.clear()
                pending_bytes = 0
            yield chunk
            continue
        pending.append(chunk)
        pending_bytes += len(chunk)
        if pending_bytes >= CHUNK:
            yield b"".join(pending)
            pending.clear()
            pending_bytes = 0
    if pending:
        yield b"".join(pending)


# Where the ZIP's bytes go: a local file (write_file) or an object store's multipart upload
# (objects_sink). It consumes the chunks as they are made, and fails (aborting what it wrote)
# when the iterator raises.
Sink = Callable[[Iterator[bytes]], None]


def _zip_chunks(
    entries: Iterable[Entry],
    trailer: Trailer,
    on_progress: Callable[[int], None],
    cancel: threading.Event,
    result: BuildResult,
) -> Iterator[bytes]:
    stream = ZipStream(compress_type=ZIP_STORED)
    for done, entry in enumerate(entries, start=1):
        if cancel.is_set():
            raise BuildCancelled
        if entry.skip_reason is not None:
            result.skipped.append((entry.post_id, entry.skip_reason))
        elif entry.path is not None:
            try:
                handle = open(entry.path, "rb")  # noqa: SIM115 - closed below, after streaming
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                result.skipped.append((entry.post_id, "file_missing"))
            else:
                with handle:
                    size = os.fstat(handle.fileno()).st_size
                    stream.add(_read_chunks(handle), entry.arcname, size=size)
                    yield from stream.all_files()
                result.added.append(entry.post_id)
        else:
            stream.add(entry.data or b"", entry.arcname)
            yield from stream.all_files()
            result.added.append(entry.post_id)
        on_progress(done)

    if cancel.is_set():
        raise BuildCancelled
    for name, blob in trailer(result.added, result.skipped):
        stream.add(blob, name, compress_type=ZIP_DEFLATED)
    yield from stream.finalize()


def build(
    sink: Sink,
    entries: Iterable[Entry],
    trailer: Trailer,
    on_progress: Callable[[int], None],
    cancel: threading.Event,
    result: BuildResult | None = None,
) -> BuildResult:
    """Stream the ZIP into `sink`; on the caller's thread (the event loop never runs this).

    `trailer(added, skipped)` returns the JSON files, built once the artworks are known. A file
    given as an iterable is consumed here, chunk by chunk, while it is deflated and written: it
    is never whole in memory. (zipstream-ng gives such an entry, whose size is unknown up front,
    a Zip64 local header; Info-ZIP unzip and Python's zipfile read it.)
    """
    result = result if result is not None else BuildResult(size=0, sha256="")
    hasher = _Hasher(result)
    try:
        sink(hasher.passing(_batched(_zip_chunks(entries, trailer, on_progress, cancel, result))))
    finally:
        hasher.stop()
    result.sha256 = hasher.digest.hexdigest()
    return result


def file_sink(temp_path: Path) -> Sink:
    """Write to `temp_path` and fsync it; the caller renames it into place (publish)."""

    def write(chunks: Iterator[bytes]) -> None:
        with open(temp_path, "wb", buffering=CHUNK) as out:
            since_hint = 0
            for chunk in chunks:
                out.write(chunk)
                since_hint += len(chunk)
                if since_hint >= WRITEBACK_EVERY:
                    # Start the kernel's writeback of what is written so far, so the final
                    # fsync has little left to wait for (the disk works while we read and hash).
                    since_hint = 0
                    out.flush()
                    os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            out.flush()
            os.fsync(out.fileno())

    return write


# S3 parts are at least 5 MiB (but the last). Memory is one part being filled plus the parts
# being sent, at most PARTS_IN_FLIGHT: ~24 MiB whatever the ZIP's size (bench.store measures
# the worker's RSS for a 1 GB ZIP).
PART_BYTES = 8 << 20
PARTS_IN_FLIGHT = 2


def object_sink(store: ObjectStore, path: str, attributes: Attributes) -> Sink:
    """A multipart upload fed while the ZIP is built: the object appears only when the upload
    completes (atomically, as a whole); if the chunks' iterator raises (a cancel, a failed read)
    obstore aborts the upload before re-raising."""

    def upload(chunks: Iterator[bytes]) -> None:
        obstore.put(
            store,
            path,
            chunks,
            attributes=attributes,
            use_multipart=True,
            chunk_size=PART_BYTES,
            max_concurrency=PARTS_IN_FLIGHT,
        )

    return upload


def build_zip(
    temp_path: Path,
    entries: Iterable[Entry],
    trailer: Trailer,
    on_progress: Callable[[int], None],
    cancel: threading.Event,
) -> BuildResult:
    """The ZIP written to `temp_path` and fsynced (the local folder's build)."""
    return build(file_sink(temp_path), entries, trailer, on_progress, cancel)


def publish(temp_path: Path, final_path: Path) -> None:
    """Atomically move a complete, fsynced ZIP to its final name (and persist the rename)."""
    os.replace(temp_path, final_path)
    dir_fd = os.open(final_path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

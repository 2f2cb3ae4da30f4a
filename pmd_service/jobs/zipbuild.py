"""Streaming a BDR ZIP to disk with zipstream-ng, in a worker thread.

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
from typing import BinaryIO
from zipfile import ZIP_DEFLATED, ZIP_STORED

from zipstream import ZipStream

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


class _Writer:
    """Writes chunks on the build thread and hashes them (sha256) on a second one, so hashing
    overlaps with reading, CRC and writing: on two cores the build costs the slower of the two
    rather than their sum. The queue is bounded: at most QUEUE_DEPTH chunks wait in memory.
    (Writing on the hash thread instead gave that thread most of the work, and was slower.)"""

    QUEUE_DEPTH = 8

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._written_since_hint = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._hash, name="zip-sha256", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        update = self.digest.update
        while (chunk := self._queue.get()) is not None:
            update(chunk)

    def _hint_writeback(self, n: int) -> None:
        # Start the kernel's writeback of what is written so far, so the final fsync has
        # little left to wait for (the disk works while we still read and hash).
        self._written_since_hint += n
        if self._written_since_hint >= WRITEBACK_EVERY:
            self._written_since_hint = 0
            self.out.flush()
            os.posix_fadvise(self.out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def write(self, chunk: bytes) -> None:
        """Write a chunk; small ones (headers, pixel-art files) are batched to ~1 MiB first, so
        each write and hash call moves a lot of bytes."""
        if len(chunk) >= CHUNK // 2:
            self._flush_pending()
            self._emit(chunk)
            return
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= CHUNK:
            self._flush_pending()

    def _emit(self, chunk: bytes) -> None:
        self._queue.put(chunk)  # bytes are immutable: the hash thread may read it meanwhile
        self.out.write(chunk)
        self.size += len(chunk)
        self._hint_writeback(len(chunk))

    def _flush_pending(self) -> None:
        if self._pending:
            self._emit(b"".join(self._pending))
            self._pending.clear()
            self._pending_bytes = 0

    def finish(self) -> None:
        """Write and hash what is still batched (the build succeeded)."""
        self._flush_pending()

    def stop(self) -> None:
        """End the hash thread, whether the build succeeded or not."""
        self._queue.put(None)
        self._thread.join()


def build_zip(
    temp_path: Path,
    entries: Iterable[Entry],
    trailer: Callable[[list[int], list[tuple[int, str]]], Iterable[tuple[str, Trailing]]],
    on_progress: Callable[[int], None],
    cancel: threading.Event,
) -> BuildResult:
    """Write the ZIP to `temp_path` and fsync it; the caller renames it into place.

    `trailer(added, skipped)` returns the JSON files, built once the artworks are known. A file
    given as an iterable is consumed here, chunk by chunk, while it is deflated and written: it
    is never whole in memory. (zipstream-ng gives such an entry, whose size is unknown up front,
    a Zip64 local header; Info-ZIP unzip and Python's zipfile read it.)
    """
    stream = ZipStream(compress_type=ZIP_STORED)
    result = BuildResult(size=0, sha256="")
    with open(temp_path, "wb", buffering=CHUNK) as out:
        writer = _Writer(out)
        try:
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
                            for chunk in stream.all_files():
                                writer.write(chunk)
                        result.added.append(entry.post_id)
                else:
                    stream.add(entry.data or b"", entry.arcname)
                    for chunk in stream.all_files():
                        writer.write(chunk)
                    result.added.append(entry.post_id)
                on_progress(done)

            if cancel.is_set():
                raise BuildCancelled
            for name, blob in trailer(result.added, result.skipped):
                stream.add(blob, name, compress_type=ZIP_DEFLATED)
            for chunk in stream.finalize():
                writer.write(chunk)
            writer.finish()
        finally:
            writer.stop()
        out.flush()
        os.fsync(out.fileno())
    result.size = writer.size
    result.sha256 = writer.digest.hexdigest()
    return result


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

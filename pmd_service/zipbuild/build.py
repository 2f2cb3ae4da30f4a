"""Streaming a ZIP with zipstream-ng, off the event loop, to disk or an object store: threads
overlap the hashing and the writes, and reads land in a few reused buffers, so a build's memory
never grows with the ZIP (docs/benchmarks-details.md, "Measurements behind the code")."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import errno
import functools
import hashlib
import io
import os
import posixpath
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from zipfile import ZIP_DEFLATED, ZIP_STORED

import obstore

from .zipstream_adapter import ZipStream

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

    from obstore import Attributes
    from obstore.store import ObjectStore

CHUNK = 1 << 20  # ~1 MiB reads and writes
WRITEBACK_EVERY = 16 << 20


class BuildCancelled(Exception):
    """The request was cancelled (or the run lost its claim) between two artworks."""


@dataclass(frozen=True)
class Entry:
    """One artwork to add: read from `path`, or already-fetched `data`, or `skip_reason`."""

    post_id: int
    arcname: str
    path: Path | None = None
    data: bytes | None = None
    skip_reason: str | None = None
    derived: Deriving | None = None  # files made from its bytes, added right after it


@dataclass(frozen=True)
class Deriving:
    """Files made from an entry's bytes (an artwork's palette): `make` is handed them, or None
    past `max_bytes` (never held), and returns entries of `data` or `skip_reason`, each named
    relative to the entry's folder (`../palettes/x.hex`), as the builder adds them."""

    make: Callable[[bytes | None], list[Entry]]
    max_bytes: int


class Stored(bytes):
    """A trailing file's bytes added as they are: already compressed (an image)."""


# A trailing JSON file: whole, or streamed as chunks (comments.json).
Trailing = bytes | Iterable[bytes]
# (added, skipped) -> the JSON files, made once the artworks are known.
Trailer = Callable[[list[int], list[tuple[int, str]]], Iterable[tuple[str, Trailing]]]


@dataclass(frozen=True)
class FileDigest:
    """One entry written: its name in the ZIP, the SHA-256 of its bytes and their count."""

    name: str
    sha256: str
    size: int


# The digests of every entry written so far -> the last small files (a manifest, tag files).
Closing = Callable[[list[FileDigest]], Iterable[tuple[str, bytes]]]


@dataclass
class BuildResult:
    size: int
    sha256: str
    added: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    files: list[FileDigest] = field(default_factory=list)


# Buffers in flight: one read, one packed, the rest queued for or held by the other threads.
STAGE_DEPTH = 4
BUFFERS = 3 * STAGE_DEPTH + 4


class _Buffers:
    """Up to `count` CHUNK-sized bytearrays, each reused once every thread lets go of it."""

    def __init__(self, count: int) -> None:
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._unmade = count
        self._lock = threading.Lock()
        self._holds: dict[int, int] = {}

    def take(self) -> bytearray:
        try:
            buffer = self._free.get_nowait()
        except queue.Empty:
            if self._unmade > 0:  # only the build thread takes: no race on the count
                self._unmade -= 1
                buffer = bytearray(CHUNK)
            else:
                buffer = self._free.get()
        with self._lock:
            self._holds[id(buffer)] = 1
        return buffer

    def hold(self, buffer: bytearray, more: int = 1) -> None:
        with self._lock:
            self._holds[id(buffer)] += more

    def release(self, buffer: bytearray | None) -> None:
        if buffer is None:
            return
        with self._lock:
            left = self._holds[id(buffer)] - 1
            self._holds[id(buffer)] = left
        if not left:
            self._free.put(buffer)


Chunk = bytes | memoryview


# A piece of the ZIP on its way to the stages: its bytes and the buffer they sit in (None: bytes
# of their own).
Piece = tuple[Chunk, bytearray | None]

# Where the ZIP's bytes go (file_sink, object_sink), on the sink thread: a chunk is valid only
# until the next is asked for, and the iterator raises when the build fails.
Sink = Callable[[Iterator[Chunk]], None]


class _Aborted(Exception):
    """Raised into the sink when the build failed: what it wrote is not a ZIP."""


class _Pipeline:
    """The hash thread and the sink thread, side by side, each taking every piece in order."""

    def __init__(self, sink: Sink, buffers: _Buffers, result: BuildResult) -> None:
        self.digest = hashlib.sha256()
        self._sink = sink
        self._buffers = buffers
        self._result = result
        self._error: BaseException | None = None
        self._aborted = False
        self._ended = False  # the sink's iterator reached the end
        self._to_hash: queue.Queue[Piece | None] = queue.Queue(STAGE_DEPTH)
        self._to_sink: queue.Queue[Piece | None] = queue.Queue(STAGE_DEPTH)
        self._threads = [
            threading.Thread(target=self._hash, name="zip-sha256", daemon=True),
            threading.Thread(target=self._write, name="zip-sink", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def send(self, chunk: Chunk, buffer: bytearray | None) -> None:
        if self._error is not None:  # the sink's, or the hash's
            raise self._error
        self._result.size += len(chunk)  # the run reads it to enforce the size cap
        piece = (chunk, buffer)
        if buffer is not None:
            self._buffers.hold(buffer, 2)
        self._to_hash.put(piece)
        self._to_sink.put(piece)

    def close(self) -> None:
        """After the last piece: wait for both stages to finish (raising a stage's error)."""
        self._stop()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """The build failed: the sink's iterator raises, and both threads end."""
        self._aborted = True
        self._stop()

    def _stop(self) -> None:
        self._to_hash.put(None)
        self._to_sink.put(None)
        for thread in self._threads:
            thread.join()

    def _hash(self) -> None:
        update, release = self.digest.update, self._buffers.release
        for chunk, buffer in iter(self._to_hash.get, None):
            try:
                update(chunk)  # releases the GIL: the other stages run meanwhile
            except BaseException as exc:  # (MemoryError): fail the build, keep releasing
                self._error = self._error or exc
            release(buffer)

    def _chunks(self) -> Iterator[Chunk]:
        release = self._buffers.release
        for chunk, buffer in iter(self._to_sink.get, None):
            yield chunk
            release(buffer)
        self._ended = True
        if self._aborted:
            raise _Aborted

    def _write(self) -> None:
        try:
            self._sink(self._chunks())
            if not self._ended:
                raise RuntimeError("the sink returned before the end of the ZIP")
        except BaseException as exc:  # handed to the build thread (send, close)
            self._error = exc
        if not self._ended:  # keep taking pieces, so no stage waits on a sink that stopped
            for _, buffer in iter(self._to_sink.get, None):
                self._buffers.release(buffer)


def _read_chunks(handle: io.RawIOBase, buffers: _Buffers) -> Iterator[memoryview]:
    readinto = handle.readinto
    while True:
        buffer = buffers.take()
        size = readinto(buffer)
        if not size:
            buffers.release(buffer)
            return
        yield memoryview(buffer)[:size]


def _packed(chunks: Iterable[Chunk], buffers: _Buffers) -> Generator[Piece, None, None]:
    """The ZIP's chunks as pieces: big ones as they are, small ones packed into one buffer."""
    pack: bytearray | None = None
    used = 0
    for chunk in chunks:
        size = len(chunk)
        if not size:
            continue
        own = chunk.obj if isinstance(chunk, memoryview) else None
        assert own is None or isinstance(own, bytearray)
        if pack is not None and (size >= CHUNK // 2 or used + size > CHUNK):
            yield memoryview(pack)[:used], pack
            pack = None
        if size >= CHUNK // 2:
            yield chunk, own
            continue
        if pack is None:
            pack, used = buffers.take(), 0
        pack[used : used + size] = chunk
        used += size
        if own is not None:
            buffers.release(own)  # copied: its buffer can take the next read
    if pack is not None:
        yield memoryview(pack)[:used], pack


# An entry smaller than this is hashed on the build thread: handing it over would cost more.
THREADED = 256 << 10


class _EntryHashes:
    """Each entry's SHA-256 into `result.files`, in order; a big entry's on a thread of its own."""

    def __init__(self, buffers: _Buffers, result: BuildResult) -> None:
        self._buffers = buffers
        self._files = result.files
        self._error: BaseException | None = None
        self._work: queue.Queue[_Hashing | _Ended | None] = queue.Queue(STAGE_DEPTH)
        self._thread: threading.Thread | None = None
        self._handed = 0  # entries handed to the thread (build thread only)
        self._recorded = 0  # and recorded by it (that thread only)

    def entry(self, name: str, chunks: Iterable[Chunk], size: int | None) -> Iterator[Chunk]:
        """`chunks` passed on, each hashed on the way, then recorded."""
        digest = hashlib.sha256()
        total = 0
        threaded = size is None or size >= THREADED
        if threaded and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zip-entry-sha256", daemon=True)
            self._thread.start()
        for chunk in chunks:
            if threaded:
                own = chunk.obj if isinstance(chunk, memoryview) else None
                if own is not None:
                    assert isinstance(own, bytearray)
                    self._buffers.hold(own)
                self._work.put(_Hashing(digest, chunk, own))
            else:
                digest.update(chunk)
            total += len(chunk)
            yield chunk
        if not threaded and self._recorded == self._handed:  # nothing before it on the thread
            self._files.append(FileDigest(name, digest.hexdigest(), total))
            return
        self._handed += 1
        self._work.put(_Ended(name, digest, total))

    def flush(self) -> None:
        """Wait until every entry handed so far is recorded (raising the thread's error)."""
        if self._thread is not None:
            self._work.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._thread is not None:
            self._work.put(None)
            self._thread.join()

    def _run(self) -> None:
        work, release, files = self._work, self._buffers.release, self._files
        while (item := work.get()) is not None:
            try:
                if isinstance(item, _Hashing):
                    try:
                        item.digest.update(item.chunk)  # releases the GIL: the build goes on
                    finally:
                        release(item.buffer)
                else:
                    files.append(FileDigest(item.name, item.digest.hexdigest(), item.size))
                    self._recorded += 1
            except BaseException as exc:  # (MemoryError): fail the build, keep releasing
                self._error = self._error or exc
            finally:
                work.task_done()
        work.task_done()


@dataclass(slots=True)
class _Hashing:
    digest: Hash
    chunk: Chunk
    buffer: bytearray | None


@dataclass(slots=True)
class _Ended:
    name: str
    digest: Hash
    size: int


def _add(
    stream: ZipStream,
    hashes: _EntryHashes,
    name: str,
    data: Iterable[Chunk],
    size: int | None = None,
    compress_type: int | None = None,
) -> Iterator[Chunk]:
    """One entry added and written, its digest recorded in `result.files` by `hashes`."""
    stream.add(hashes.entry(name, data, size), name, size=size, compress_type=compress_type)
    yield from stream.all_files()


class _Kept:
    """An entry's bytes copied as they stream past, up to `max_bytes` (None past them)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._data: bytearray | None = bytearray()

    def tap(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        for chunk in chunks:
            if self._data is not None:
                if len(self._data) + len(chunk) > self._max:
                    self._data = None
                else:
                    self._data += chunk  # copied now: a read buffer is reused once passed on
            yield chunk

    @property
    def data(self) -> bytes | None:
        return None if self._data is None else bytes(self._data)


# Derived files are made on threads of their own while the build goes on (decoding an image
# lets go of the GIL), each added this many entries after its own, or sooner when the entries'
# bytes held meanwhile pass the bound: the same place in every build of the same entries.
DERIVING_AHEAD = 4
DERIVING_HELD_BYTES = 32 << 20


@functools.cache
def _derivers() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="pmd-derive")


_Deriving = tuple["Entry", concurrent.futures.Future[list["Entry"]], int]


class _Derivations:
    """The entries whose derived files are being made, in their order, with the bytes held."""

    def __init__(self) -> None:
        self.pending: collections.deque[_Deriving] = collections.deque()
        self.held = 0

    def start(self, entry: Entry, data: bytes | None) -> None:
        assert entry.derived is not None
        size = len(data or b"")
        self.pending.append((entry, _derivers().submit(entry.derived.make, data), size))
        self.held += size

    def ready(self, every: bool = False) -> Iterator[tuple[Entry, list[Entry]]]:
        """The made files in their entries' order, as far as the bounds above ask (`every`: all)."""
        while self.pending and (
            every or len(self.pending) > DERIVING_AHEAD or self.held > DERIVING_HELD_BYTES
        ):
            entry, future, size = self.pending.popleft()
            self.held -= size
            yield entry, future.result()


def _derived(
    stream: ZipStream, hashes: _EntryHashes, result: BuildResult, entry: Entry, made: list[Entry]
) -> Iterator[Chunk]:
    """The files made of `entry`'s bytes, added (or skipped) in its folder."""
    folder = posixpath.dirname(entry.arcname)
    for file in made:
        if file.skip_reason is not None:
            result.skipped.append((file.post_id, file.skip_reason))
            continue
        name = posixpath.normpath(posixpath.join(folder, file.arcname))
        blob = file.data or b""
        # Stored: a deflate stream costs more to set up than the few KB of text it would save.
        yield from _add(stream, hashes, name, (blob,), len(blob), ZIP_STORED)
        result.added.append(file.post_id)


def _zip_chunks(
    entries: Iterable[Entry],
    trailer: Trailer,
    on_progress: Callable[[int], None],
    cancel: threading.Event,
    result: BuildResult,
    buffers: _Buffers,
    hashes: _EntryHashes,
    closing: Closing | None = None,
) -> Generator[Chunk, None, None]:
    stream = ZipStream(compress_type=ZIP_STORED)
    deriving = _Derivations()
    for done, entry in enumerate(entries, start=1):
        if cancel.is_set():
            raise BuildCancelled
        if entry.skip_reason is not None:
            result.skipped.append((entry.post_id, entry.skip_reason))
        elif entry.path is not None:
            try:
                handle = open(entry.path, "rb", buffering=0)  # noqa: SIM115 - closed below
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                result.skipped.append((entry.post_id, "file_missing"))
            else:
                kept = None if entry.derived is None else _Kept(entry.derived.max_bytes)
                with handle:
                    size = os.fstat(handle.fileno()).st_size
                    chunks = _read_chunks(handle, buffers)
                    read = chunks if kept is None else kept.tap(chunks)
                    yield from _add(stream, hashes, entry.arcname, read, size)
                result.added.append(entry.post_id)
                if kept is not None:
                    deriving.start(entry, kept.data)
        else:
            data = entry.data or b""
            yield from _add(stream, hashes, entry.arcname, (data,), len(data))
            result.added.append(entry.post_id)
            if entry.derived is not None:
                deriving.start(entry, data if len(data) <= entry.derived.max_bytes else None)
        for derived, made in deriving.ready():
            yield from _derived(stream, hashes, result, derived, made)
        on_progress(done)
    for derived, made in deriving.ready(every=True):
        yield from _derived(stream, hashes, result, derived, made)
    if cancel.is_set():
        raise BuildCancelled
    for name, blob in trailer(result.added, result.skipped):
        if isinstance(blob, bytes):
            packing = ZIP_STORED if isinstance(blob, Stored) else ZIP_DEFLATED
            yield from _add(stream, hashes, name, (blob,), len(blob), packing)
        else:
            yield from _add(stream, hashes, name, blob, compress_type=ZIP_DEFLATED)
    if closing is not None:
        hashes.flush()
        for name, closed in closing(list(result.files)):
            yield from _add(stream, hashes, name, (closed,), len(closed), ZIP_DEFLATED)
    yield from stream.finalize()


def sha256sum_lines(files: Iterable[FileDigest], relative_to: str = "") -> bytes:
    """`sha256sum`'s format (`<hex>  <name>`, text mode), names relative to `relative_to`:
    `sha256sum -c` run there checks every file (a BagIt manifest has the same lines)."""
    return b"".join(f"{f.sha256}  {f.name.removeprefix(relative_to)}\n".encode() for f in files)


def build(
    sink: Sink,
    entries: Iterable[Entry],
    trailer: Trailer,
    on_progress: Callable[[int], None],
    cancel: threading.Event,
    result: BuildResult | None = None,
    closing: Closing | None = None,
) -> BuildResult:
    """Stream the ZIP into `sink` on the caller's thread; `trailer(added, skipped)` gives the
    JSON files (an iterable one is streamed), then `closing(result.files)` the last ones."""
    result = result if result is not None else BuildResult(size=0, sha256="")
    buffers = _Buffers(BUFFERS)
    pipeline = _Pipeline(sink, buffers, result)
    hashes = _EntryHashes(buffers, result)
    chunks = _zip_chunks(entries, trailer, on_progress, cancel, result, buffers, hashes, closing)
    packed = _packed(chunks, buffers)
    try:
        for chunk, buffer in packed:
            pipeline.send(chunk, buffer)
            buffers.release(buffer)  # the build thread's own hold: the stages hold it now
        hashes.flush()
    except BaseException:
        pipeline.abort()
        raise
    finally:
        # Closed now, so the artwork open in `_zip_chunks` is too, not whenever the GC runs.
        packed.close()
        chunks.close()
        hashes.close()
    pipeline.close()
    result.sha256 = pipeline.digest.hexdigest()
    return result


def file_sink(temp_path: Path) -> Sink:
    """Write to `temp_path` and fsync it; the caller renames it into place (publish)."""

    def write(chunks: Iterator[Chunk]) -> None:
        # Unbuffered: the pieces are ~1 MiB already, and a buffered writer would copy each one.
        with open(temp_path, "wb", buffering=0) as out:
            since_hint = 0
            for chunk in chunks:
                view = memoryview(chunk)
                while view:  # a raw write may take less than it was given
                    written = out.write(view)
                    if not written:
                        raise OSError(errno.EIO, f"no progress writing {temp_path}")
                    view = view[written:]
                since_hint += len(chunk)
                if since_hint >= WRITEBACK_EVERY:
                    # Start the writeback now, so the final fsync has little left to wait for.
                    since_hint = 0
                    os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            os.fsync(out.fileno())

    return write


# S3 parts are at least 5 MiB; memory is one part filled plus PARTS_IN_FLIGHT being sent.
PART_BYTES = 8 << 20
PARTS_IN_FLIGHT = 2


def object_sink(store: ObjectStore, path: str, attributes: Attributes) -> Sink:
    """A multipart upload fed while the ZIP is built; each chunk copied, as buffers are reused."""

    def upload(chunks: Iterator[Chunk]) -> None:
        obstore.put(
            store,
            path,
            (bytes(chunk) for chunk in chunks),
            attributes=attributes,
            use_multipart=True,
            chunk_size=PART_BYTES,
            max_concurrency=PARTS_IN_FLIGHT,
        )

    return upload


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

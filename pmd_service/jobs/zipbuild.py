"""Streaming a BDR ZIP to disk with zipstream-ng, in a worker thread.

Measured on this machine kind (128 × 1 MB PNGs): zipstream-ng writing synchronously is 1.9× a
plain copy; the same with one awaited aiofiles write per 64 KiB chunk 7.8×. So the whole build
(file reads, CRC, sha256, writes) runs in one thread with plain buffered I/O: the event loop only
receives progress callbacks and is never blocked by file I/O or hashing. Artworks are stored
(they are compressed images already: DEFLATE saved 0.6%), the JSON files deflated. Memory is one
read buffer plus, for HTTP sources, the few artworks fetched ahead: never the size of the ZIP.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zipfile import ZIP_DEFLATED, ZIP_STORED

from zipstream import ZipStream

CHUNK = 1 << 20  # ~1 MiB reads and writes


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


def build_zip(
    temp_path: Path,
    entries: Iterable[Entry],
    trailer: Callable[[list[int], list[tuple[int, str]]], list[tuple[str, bytes]]],
    on_progress: Callable[[int], None],
    cancel: threading.Event,
) -> BuildResult:
    """Write the ZIP to `temp_path` and fsync it; the caller renames it into place.

    `trailer(added, skipped)` returns the JSON files, built once the artworks are known.
    """
    stream = ZipStream(compress_type=ZIP_STORED)
    digest = hashlib.sha256()
    result = BuildResult(size=0, sha256="")
    with open(temp_path, "wb", buffering=CHUNK) as out:

        def emit(chunks: Iterable[bytes]) -> None:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
                result.size += len(chunk)

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
                        emit(stream.all_files())
                    result.added.append(entry.post_id)
            else:
                stream.add(entry.data or b"", entry.arcname)
                emit(stream.all_files())
                result.added.append(entry.post_id)
            on_progress(done)

        if cancel.is_set():
            raise BuildCancelled
        for name, blob in trailer(result.added, result.skipped):
            stream.add(blob, name, compress_type=ZIP_DEFLATED)
        emit(stream.finalize())
        out.flush()
        os.fsync(out.fileno())
    result.sha256 = digest.hexdigest()
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

"""The ZIP builder on its own: what it records matches what it wrote, and a full disk or a
cancel ends the build with the right error and no thread left behind."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pmd_service.zipbuild.build import (
    CHUNK,
    THREADED,
    BuildCancelled,
    Entry,
    FileDigest,
    build,
    file_sink,
    sha256sum_lines,
)


def _trailer(added: list[int], skipped: list[tuple[int, str]]) -> list[tuple[str, bytes]]:
    return [("metadata.json", f'{{"added": {added}}}'.encode())]


def _artworks(folder: Path, sizes: list[int]) -> list[Entry]:
    entries = []
    for i, size in enumerate(sizes):
        path = folder / f"{i}.png"
        path.write_bytes(os.urandom(size))
        entries.append(Entry(i, f"artworks/{i}.png", path=path))
    return entries


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def test_the_recorded_size_and_sha256_are_the_files(tmp_path: Path) -> None:
    # Big and small entries: the small ones are batched before they are written and hashed.
    entries = _artworks(tmp_path, [3 << 20, 100, 5000, 1 << 20, 7])
    entries.append(Entry(99, "artworks/99.png", data=b"fetched bytes"))
    entries.append(Entry(98, "artworks/98.png", skip_reason="fetch_failed"))
    out = tmp_path / "out.zip"
    before = _threads()
    result = build(file_sink(out), entries, _trailer, lambda n: None, threading.Event())
    data = out.read_bytes()
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.added == [0, 1, 2, 3, 4, 99] and result.skipped == [(98, "fetch_failed")]
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        for e in entries[:5]:
            assert e.path is not None
            assert archive.read(e.arcname) == e.path.read_bytes()
        assert archive.read("artworks/99.png") == b"fetched bytes"
    assert _threads() == before


def _manifest(files: list[FileDigest]) -> list[tuple[str, bytes]]:
    return [("manifest-sha256.txt", sha256sum_lines(files))]


def test_the_manifest_is_sha256sum_of_the_extracted_files(tmp_path: Path) -> None:
    # Big entries are hashed on a thread of their own while their reused buffers take the next
    # reads: a buffer given back before its bytes were hashed would give a wrong line here.
    # Small ones are hashed on the build thread, between big ones: the lines stay in order.
    sizes = [THREADED - 1, THREADED, THREADED + 1, 3 * CHUNK + 5, 17, CHUNK, 0, 2 * CHUNK - 1]
    (tmp_path / "in").mkdir()
    entries = _artworks(tmp_path / "in", [*sizes * 3, *[CHUNK] * 40])
    entries.append(Entry(99, "artworks/99.png", data=os.urandom(CHUNK + 3)))
    out = tmp_path / "out.zip"
    before = _threads()
    result = build(
        file_sink(out), entries, _trailer, lambda n: None, threading.Event(), closing=_manifest
    )
    assert _threads() == before
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "out")
    assert names[-1] == "manifest-sha256.txt"
    manifest = (tmp_path / "out" / "manifest-sha256.txt").read_text()
    assert [line.split("  ", 1)[1] for line in manifest.splitlines()] == names[:-1]
    checked = subprocess.run(
        ["sha256sum", "--strict", "-c", "manifest-sha256.txt"],
        cwd=tmp_path / "out",
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK") == len(names) - 1
    assert [f.name for f in result.files] == names
    assert [f.size for f in result.files[:-2]] == [
        (tmp_path / "out" / n).stat().st_size for n in names[:-2]
    ]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_an_oserror_and_leaves_no_thread(tmp_path: Path) -> None:
    entries = _artworks(tmp_path, [2 << 20, 2 << 20])
    before = _threads()
    with pytest.raises(OSError, match="No space left") as caught:
        build(file_sink(Path("/dev/full")), entries, _trailer, lambda n: None, threading.Event())
    assert caught.value.errno == errno.ENOSPC
    assert _threads() == before


def test_a_cancel_is_buildcancelled_and_leaves_no_thread(tmp_path: Path) -> None:
    entries = _artworks(tmp_path, [1 << 20, 1 << 20, 1 << 20])
    cancel = threading.Event()

    def on_progress(done: int) -> None:
        if done == 1:
            cancel.set()  # as a DELETE would, between two artworks

    before = _threads()
    with pytest.raises(BuildCancelled):
        build(file_sink(tmp_path / "out.zip"), entries, _trailer, on_progress, cancel)
    assert _threads() == before


def test_sizes_around_the_buffer_size_come_out_whole(tmp_path: Path) -> None:
    # Reads land in reused buffers: big ones travel down the pipeline, small ones and the tails
    # of big ones are copied into packs. Every boundary, many times over the pool's size.
    sizes = [0, 1, CHUNK // 2 - 1, CHUNK // 2, CHUNK // 2 + 1, CHUNK - 1, CHUNK, CHUNK + 1]
    sizes += [3 * CHUNK + 5, 2 * CHUNK, 17, CHUNK // 2 - 1] * 4
    entries = _artworks(tmp_path, sizes)
    out = tmp_path / "out.zip"
    result = build(file_sink(out), entries, _trailer, lambda n: None, threading.Event())
    data = out.read_bytes()
    assert result.size == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        for e in entries:
            assert e.path is not None
            assert archive.read(e.arcname) == e.path.read_bytes()


def test_a_sink_that_stops_early_is_an_error_not_a_hang(tmp_path: Path) -> None:
    entries = _artworks(tmp_path, [CHUNK] * 40)  # far more than the buffers in flight
    taken: list[int] = []

    def sink(chunks: Iterator[bytes | memoryview]) -> None:
        taken.append(len(next(chunks)))

    before = _threads()
    with pytest.raises(RuntimeError, match="before the end"):
        build(sink, entries, _trailer, lambda n: None, threading.Event())
    assert len(taken) == 1
    assert _threads() == before


def test_a_sink_error_midway_stops_the_build(tmp_path: Path) -> None:
    entries = _artworks(tmp_path, [CHUNK] * 40)
    read: list[int] = []

    def sink(chunks: Iterator[bytes | memoryview]) -> None:
        for chunk in chunks:
            read.append(len(chunk))
            if len(read) == 3:
                raise OSError(errno.EIO, "I/O error")

    before = _threads()
    with pytest.raises(OSError, match="I/O error"):
        build(sink, entries, _trailer, lambda n: None, threading.Event())
    assert _threads() == before


def test_every_entry_s_crc_matches_its_bytes_across_chunks(tmp_path: Path) -> None:
    entries = _artworks(tmp_path, [CHUNK + 12_345, 777])
    out = tmp_path / "out.zip"
    build(file_sink(out), entries, _trailer, lambda n: None, threading.Event())
    with zipfile.ZipFile(out) as archive:
        for info, entry in zip(archive.infolist(), entries, strict=False):
            assert entry.path is not None
            assert zlib.crc32(entry.path.read_bytes()) == info.CRC

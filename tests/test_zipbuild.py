"""The ZIP builder on its own: what it records matches what it wrote, and a full disk or a
cancel ends the build with the right error and no thread left behind."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import zipfile
from pathlib import Path

import pytest

from pmd_service.jobs.zipbuild import BuildCancelled, Entry, build_zip


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
    result = build_zip(out, entries, _trailer, lambda n: None, threading.Event())
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


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_an_oserror_and_leaves_no_thread(tmp_path: Path) -> None:
    entries = _artworks(tmp_path, [2 << 20, 2 << 20])
    before = _threads()
    with pytest.raises(OSError, match="No space left") as caught:
        build_zip(Path("/dev/full"), entries, _trailer, lambda n: None, threading.Event())
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
        build_zip(tmp_path / "out.zip", entries, _trailer, on_progress, cancel)
    assert _threads() == before

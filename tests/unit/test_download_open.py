"""A download's file opened off the event loop is closed even when its request is cancelled
while the thread opens it (a client that left), by the thread itself: nothing waits for the
loop to run again, which at a server's (or a test's) end it may never do."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pmd_service.api.zip_download import open_in_thread


def _reader_open(writer: int) -> bool:
    try:
        os.write(writer, b"x")
    except BrokenPipeError:
        return False
    return True


def _closed_within(writer: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _reader_open(writer) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _reader_open(writer)


async def test_a_file_opened_for_a_cancelled_request_is_closed(tmp_path: Path) -> None:
    # Opening a FIFO for reading waits for a writer: the request is cancelled meanwhile.
    fifo = tmp_path / "zip"
    os.mkfifo(fifo)
    opening = asyncio.create_task(open_in_thread(fifo))
    await asyncio.sleep(0.05)
    opening.cancel()
    await asyncio.gather(opening, return_exceptions=True)
    assert opening.cancelled()
    # From here the loop runs nothing: only the opening thread can close the reader's end.
    writer = os.open(fifo, os.O_WRONLY)
    try:
        assert _closed_within(writer, 5)
    finally:
        os.close(writer)

"""A download's file opened off the event loop is closed even when its request is cancelled
while the thread opens it (a client that left): nothing is left open."""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
from pathlib import Path

from pmd_service.api.zip_download import open_in_thread


async def test_a_file_opened_for_a_cancelled_request_is_closed(tmp_path: Path) -> None:
    # Opening a FIFO for reading waits for a writer: the request is cancelled meanwhile.
    fifo = tmp_path / "zip"
    os.mkfifo(fifo)
    opening = asyncio.create_task(open_in_thread(fifo))
    await asyncio.sleep(0.05)
    opening.cancel()
    writer = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            await asyncio.gather(opening, return_exceptions=True)
            for _ in range(50):  # the thread's result arrives through the loop
                await asyncio.sleep(0.01)
            gc.collect()
        assert opening.cancelled()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
        # The reader's end is closed: a write now finds no reader.
        try:
            os.write(writer, b"x")
            reader_open = True
        except BrokenPipeError:
            reader_open = False
        assert not reader_open
    finally:
        os.close(writer)

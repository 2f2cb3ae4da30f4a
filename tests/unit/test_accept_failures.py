"""The loop's exception handler of a server: a failed accept is counted, an accept retry that
finds its socket closed by shutdown is dropped, anything else reaches the handler before it."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from typing import Any

import pytest

from pmd_service.web.connections import ACCEPT_FAILED, AcceptFailures, Tally


async def test_only_accept_failures_and_retries_after_close_are_kept_from_the_handler() -> None:
    loop = asyncio.get_running_loop()
    passed: list[dict[str, Any]] = []
    tally = Tally("%d accept(s) failed")
    handler = AcceptFailures(lambda _loop, context: passed.append(context), tally)
    retry = "Exception in callback BaseSelectorEventLoop._start_serving(<factory>, <socket>)"
    handler(loop, {"message": ACCEPT_FAILED, "exception": OSError(errno.EMFILE, "Too many")})
    handler(loop, {"message": retry, "exception": ValueError("Invalid file descriptor: -1")})
    other = {"message": "Exception in callback other()", "exception": ValueError("x")}
    handler(loop, other)
    assert passed == [other]
    assert tally.total == 1


async def test_a_busy_loop_still_gets_one_line_a_period(caplog: pytest.LogCaptureFixture) -> None:
    """The loop blocked past a summary's time (thousands of failed accepts in one turn): the
    events meanwhile go into that one summary, not into a line of their own beside it."""
    tally = Tally("%d accept(s) failed", period=0.2)
    caplog.set_level(logging.WARNING, "pmd_service.web.connections")
    tally.add("EMFILE")  # the first: a line at once
    tally.add("EMFILE")  # its summary is due in 0.2 s
    time.sleep(0.3)  # noqa: ASYNC251 - the loop held past that time, as a flood of accepts holds it
    for _ in range(3):
        tally.add("EMFILE")
    await asyncio.sleep(0.1)

    assert [r.getMessage() for r in caplog.records] == [
        "1 accept(s) failed (EMFILE)",
        "4 accept(s) failed (EMFILE)",
    ]
    assert tally.total == 5

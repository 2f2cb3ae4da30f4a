"""The loop's exception handler of a server: a failed accept is counted, an accept retry that
finds its socket closed by shutdown is dropped, anything else reaches the handler before it."""

from __future__ import annotations

import asyncio
import errno
from typing import Any

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

"""What the tests of the operations CLI share: they call its `main` in-process, as an operator's
shell runs it, outside any event loop (`main` runs its own)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any

import pytest

from support.stack import connected


def admin_value(admin_url: str, query: str, *args: object) -> Any:
    """The first value of one of the test's own statements, run as the admin (the CLI runs as
    the service's role)."""

    async def run() -> Any:
        async with connected(admin_url) as conn:
            return await conn.fetchval(query, *args)

    return asyncio.run(run())


def keep_process_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI configures logging and the exception hooks for the process, as it should: the
    next tests get theirs back."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)

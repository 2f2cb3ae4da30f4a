"""What the tests of the operations CLI share: they call its `main` in-process."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from typing import Any

import pytest

from pmd_service.core.settings import Settings
from support.stack import connected, database_env
from tests.helpers import EMPTY_TABLES


def operator_shell(
    settings: Settings, admin_url: str, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Settings:
    """An operator's shell environment on the test database, and `env`; the tables emptied."""
    for name in [n for n in os.environ if n.startswith(("PMD_", "STARTUP_", "JWT_"))]:
        monkeypatch.delenv(name)
    env = {
        **database_env(settings),
        "REDIS_URL": settings.redis_url,
        "AUTO_MIGRATE": "false",
        "PMD_DATA_DIR": str(settings.data_dir),
        "VAULT_PATH": str(settings.vault_path),
        "ZIP_PATH": str(settings.zip_path),
        **env,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    admin_value(admin_url, EMPTY_TABLES)
    keep_process_logging(monkeypatch)
    return settings


def admin_value(admin_url: str, query: str, *args: object) -> Any:
    async def run() -> Any:
        async with connected(admin_url) as conn:
            return await conn.fetchval(query, *args)

    return asyncio.run(run())


def keep_process_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's logging and exception hooks back for the next tests after the CLI's."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)

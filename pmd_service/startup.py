"""What every process does first: settings from the environment, logging, embedded servers."""

from __future__ import annotations

import sys
from typing import NoReturn

from . import logs
from .settings import ConfigError, Settings


def load_settings(process: str) -> Settings:
    """Settings for `process`, or exit with one line naming the bad variable.

    With DATABASE_URL/REDIS_URL unset (dev only) the embedded servers are started or joined.
    """
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        _stop(f"{process}: configuration error: {exc}")
    logs.configure(settings.log_format)
    if settings.embedded:
        from .embedded import EmbeddedError, with_embedded_services

        try:
            settings = with_embedded_services(settings)
        except EmbeddedError as exc:
            _stop(f"{process}: {exc}")
    return settings


def _stop(line: str) -> NoReturn:
    """One line and exit status 2, as for a bad argument: no traceback for a setup problem."""
    print(line, file=sys.stderr)
    sys.exit(2)

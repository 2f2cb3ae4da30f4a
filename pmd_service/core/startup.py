"""What every process does first: settings from the environment, logging, embedded servers."""

from __future__ import annotations

import sys
from typing import NoReturn

from . import error_reports, logs
from .settings import ConfigError, Embedded, Settings


def load_settings(process: str, *, embedded: Embedded | None = None) -> Settings:
    """Settings for `process`, or exit with one line naming the bad variable.

    With DATABASE_URL/REDIS_URL unset (dev only) `embedded` (`pmd_service.dev.embedded.services`,
    passed by the entry points that allow it: the core knows nothing of development) starts or
    joins the embedded servers; without it the URLs are required.
    """
    try:
        settings = Settings.from_env(embedded=embedded)
    except ConfigError as exc:
        _stop(f"{process}: configuration error: {exc}")
    logs.configure(settings.log_format)
    try:
        error_reports.configure(settings, process)
    except ConfigError as exc:
        _stop(f"{process}: configuration error: {exc}")
    return settings


def _stop(line: str) -> NoReturn:
    """One line and exit status 2, as for a bad argument: no traceback for a setup problem."""
    print(line, file=sys.stderr)
    sys.exit(2)

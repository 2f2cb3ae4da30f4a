"""What every process does first: settings from the environment, logging, embedded servers."""

from __future__ import annotations

import sys

from . import logs
from .settings import ConfigError, Settings


def load_settings(process: str) -> Settings:
    """Settings for `process`, or exit with one line naming the bad variable.

    With DATABASE_URL/REDIS_URL unset (dev only) the embedded servers are started or joined.
    """
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.exit(f"{process}: configuration error: {exc}")
    logs.configure(settings.log_format)
    if settings.embedded:
        from .embedded import with_embedded_services

        settings = with_embedded_services(settings)
    return settings

"""What every process does first: settings from the environment, logging, embedded servers."""

from __future__ import annotations

import sys
from typing import NoReturn

from . import logs
from .embedded import EmbeddedError, services
from .settings import ConfigError, Settings


def load_settings(process: str, *, embedded: bool = True) -> Settings:
    """Settings for `process`, or exit with one line naming the bad variable.

    With DATABASE_URL/REDIS_URL unset (dev only) the embedded servers are started or joined
    (embedded.py imports their packages only then: production installs lack them), unless
    `embedded` is false: then the URLs are required.
    """
    try:
        settings = Settings.from_env(embedded=services if embedded else None)
    except ConfigError as exc:
        _stop(f"{process}: configuration error: {exc}")
    except EmbeddedError as exc:
        _stop(f"{process}: {exc}")
    logs.configure(settings.log_format)
    return settings


def _stop(line: str) -> NoReturn:
    """One line and exit status 2, as for a bad argument: no traceback for a setup problem."""
    print(line, file=sys.stderr)
    sys.exit(2)

"""Run the HTTP server: `python server.py` (configuration from the environment)."""

from __future__ import annotations

import sys

from aiohttp import web

from pmd_service import logs
from pmd_service.app import create_app
from pmd_service.settings import ConfigError, Settings


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        sys.exit(f"pmd-server: configuration error: {exc}")
    logs.configure(settings.log_format)
    if settings.embedded:
        from pmd_service.embedded import with_embedded_services

        settings = with_embedded_services(settings)
    # shutdown_timeout bounds how long open streams may delay exit on SIGTERM.
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=1.0,
        access_log=None,
        print=lambda msg: None,
    )


if __name__ == "__main__":
    main()

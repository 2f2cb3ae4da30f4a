"""Run the HTTP server: `python -m pmd_service serve` (or `python server.py` from a checkout)."""

from __future__ import annotations

from aiohttp import web

from ..startup import load_settings
from .app import create_app


def main() -> None:
    settings = load_settings("pmd-server")
    # shutdown_timeout bounds how long open streams may delay exit on SIGTERM.
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=1.0,
        # Idle keep-alive connections (and clients that never finish a request) are closed
        # after 15 s instead of aiohttp's 75 s.
        keepalive_timeout=15,
        access_log=None,
        print=lambda msg: None,
    )

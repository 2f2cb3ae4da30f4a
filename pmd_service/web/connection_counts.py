"""What a server process's connection guard counts (web/connections.py), for /metrics."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass
class ConnectionCounts:
    open: int = 0
    refused: int = 0  # past MAX_CONNECTIONS: answered 503 and closed
    heads_late: int = 0  # closed for a head that did not come within HEADER_TIMEOUT_SECONDS


CONNECTION_COUNTS: web.AppKey[ConnectionCounts] = web.AppKey("connection_counts")

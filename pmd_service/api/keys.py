"""The app-level and request-level objects every endpoint may use, as typed keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis
from prometheus_client import CollectorRegistry

from ..core.presence import Presence
from ..core.settings import Settings

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import AbstractRoute

    from ..host.access import Principal
    from ..storage.zip_files import ZipFiles
    from .declaration import Endpoint
    from .download_slots import ProxySlots
    from .ticket_redemptions import Redemptions

SETTINGS = web.AppKey("settings", Settings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", ArqRedis)
TICKET_REDEMPTIONS: web.AppKey[Redemptions] = web.AppKey("ticket_redemptions")
PRESENCE = web.AppKey("presence", Presence)
ZIP_FILES: web.AppKey[ZipFiles] = web.AppKey("zip_files")
OPENAPI_DOC: web.AppKey[dict[str, Any]] = web.AppKey("openapi_doc", dict)
# The process's Prometheus registry, where a feature's lifetime adds what it counts.
COLLECTORS = web.AppKey("collectors", CollectorRegistry)
ROUTE_ENDPOINTS: web.AppKey[dict[AbstractRoute, Endpoint]] = web.AppKey("route_endpoints", dict)

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
# Set by handlers that stream (SSE): once headers are out, an error can only end the stream.
STREAM_RESPONSE: web.RequestKey[web.StreamResponse] = web.RequestKey("stream_response")
# The status to count for a response other than the one it started with (499: the client left).
COUNTED_STATUS: web.RequestKey[int] = web.RequestKey("counted_status")
PROXY_SLOTS: web.AppKey[ProxySlots] = web.AppKey("proxy_slots")

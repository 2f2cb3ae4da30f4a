"""Every app-level and request-level object, as typed keys, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis
from redis.asyncio import Redis

from ..core.settings import Settings

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import AbstractRoute

    from ..bdr.announcer import Announcer
    from ..bdr.files import ZipFiles
    from ..host.access import Principal
    from ..sse.hub import Hub
    from ..sse.pool_turns import Turns
    from ..sse.redemptions import Redemptions
    from ..sse.user_lookups import UserLookups
    from .connection_counts import ConnectionCounts
    from .declaration import Endpoint
    from .download_slots import ProxySlots
    from .outage import OutageLog
    from .prometheus import Metrics

SETTINGS = web.AppKey("settings", Settings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", ArqRedis)
# Tickets spent (GETDEL) many to a round trip (sse/redemptions.py).
TICKET_REDEMPTIONS: web.AppKey[Redemptions] = web.AppKey("ticket_redemptions")
# The host site's Redis, where its feeds are cached; None when HOST_CACHE_REDIS_URL is unset.
HOST_CACHE: web.AppKey[Redis | None] = web.AppKey("host_cache")
# Where ready ZIPs are: the BDR_PATH folder or the BDR_STORE bucket.
ZIP_FILES: web.AppKey[ZipFiles] = web.AppKey("zip_files")
SSE_HUB: web.AppKey[Hub] = web.AppKey("sse_hub")
# Stream openings whose database queries may run at once (web/sse.py): the rest wait their turn.
SSE_POOL_TURNS: web.AppKey[Turns] = web.AppKey("sse_openings")
# What the server's connection guard counts (web/connections.py); served otherwise, zeros.
CONNECTION_COUNTS: web.AppKey[ConnectionCounts] = web.AppKey("connection_counts")
# Stream openings past their head at once (web/sse.py, opening_gate_middleware).
SSE_OPENING_GATE: web.AppKey[Turns] = web.AppKey("sse_opening_gate")
SSE_CALLERS: web.AppKey[UserLookups] = web.AppKey("sse_callers")
# Publishes new requests' first events, a moment after their replies.
ANNOUNCER: web.AppKey[Announcer] = web.AppKey("announcer")
# Whether the hub tends the process's garbage collector (sse/heap.py): the server process's
# app only, never an app among others in one process (tests).
TEND_HEAP: web.AppKey[bool] = web.AppKey("tend_heap")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
# Where the internal /metrics listens (host, port) when SERVER_METRICS_PORT is set.
METRICS_ADDRESS: web.AppKey[Any] = web.AppKey("metrics_address")
OPENAPI_DOC: web.AppKey[dict[str, Any]] = web.AppKey("openapi_doc", dict)
# Every endpoint's declaration by its route (web/routing.py).
ROUTE_ENDPOINTS: web.AppKey[dict[AbstractRoute, Endpoint]] = web.AppKey("route_endpoints", dict)
# Refusals of the database and Redis, logged once a minute with a count (web/outage.py).
OUTAGES: web.AppKey[OutageLog] = web.AppKey("outages")

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
# Set by handlers that stream (SSE): once headers are out, an error can only end the stream.
STREAM_RESPONSE: web.RequestKey[web.StreamResponse] = web.RequestKey("stream_response")
# The status to count for a response other than the one it started with (499: the client left).
COUNTED_STATUS: web.RequestKey[int] = web.RequestKey("counted_status")
# Proxy mode's downloads streaming in this process (web/object_download.py).
PROXY_SLOTS: web.AppKey[ProxySlots] = web.AppKey("proxy_slots")

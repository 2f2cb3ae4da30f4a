"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import time

import msgspec
from aiohttp import web

from .. import __version__
from ..api.declaration import Auth, Endpoint
from ..api.keys import DB_POOL, REDIS, ZIP_FILES
from ..api.responses import json_response
from ..core.codes import Code
from ..core.problems import ProblemError

CHECK_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    return json_response(HealthStatus(status="ok", version=__version__))


async def _check_db(request: web.Request) -> str:
    pool = request.app[DB_POOL]
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await pool.fetchval("SELECT 1")
    except TimeoutError:
        # Every connection in use is load, not an outage: unready, it would push its clients on.
        if pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0:
            return "busy: every pooled connection in use"
        raise
    return "ok"


async def _check_redis(request: web.Request) -> str:
    async with asyncio.timeout(CHECK_TIMEOUT):
        await request.app[REDIS].ping()
    return "ok"


def _store_state(request: web.Request) -> str | None:
    """The bucket as the downloads and removals found it (None: ZIPs on disk), never called."""
    files = request.app[ZIP_FILES]
    if files.bucket is None:
        return None
    health = files.health
    if health.failing_since is None:
        return "ok" if health.calls else "ok (not called yet)"
    return (
        f"failing for {time.time() - health.failing_since:.0f} s ({health.last_error}); "
        "clears at the next call that works"
    )


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    for name, check in (("database", _check_db), ("redis", _check_redis)):
        try:
            checks[name] = await check(request)
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            checks[name] = f"unreachable: {type(exc).__name__}"
    failing = ", ".join(k for k, v in checks.items() if v.startswith("unreachable"))
    store = _store_state(request)
    if store is not None:
        # Reported, not a reason to be unready: every server shares the store.
        checks["store"] = store
    if not failing:
        return web.json_response({"status": "ready", "checks": checks})
    raise ProblemError(
        503,
        "not-ready",
        "Service Unavailable",
        f"Not ready: {failing} unreachable.",
        headers={"Retry-After": "5"},
        extra={"checks": checks},
        code=Code.NOT_READY,
    )


class HealthStatus(msgspec.Struct):
    status: str
    # The release this process runs: during a rolling upgrade, which servers are new yet.
    version: str


class ReadyStatus(msgspec.Struct):
    status: str
    checks: dict[str, str]


ENDPOINTS = (
    Endpoint(
        "get",
        "/healthz",
        healthz,
        "healthz",
        "Liveness, and the release the process runs",
        "operations",
        auth=Auth.PUBLIC,
        response=HealthStatus,
    ),
    Endpoint(
        "get",
        "/readyz",
        readyz,
        "readyz",
        "Readiness: database and Redis reachable "
        "(and, with ZIPs in a bucket, how the store's last call went: `checks.store`)",
        "operations",
        auth=Auth.PUBLIC,
        response=ReadyStatus,
        problems=(503,),
        codes=(Code.NOT_READY,),
        problem_notes={
            503: "Not ready: the database or Redis is unreachable (`checks` "
            "names which); see Retry-After"
        },
    ),
)

"""Liveness and readiness."""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web

from .endpoint import Auth, Endpoint
from .keys import DB_POOL, REDIS
from .problems import problem_response

CHECK_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _check_db(request: web.Request) -> None:
    async with asyncio.timeout(CHECK_TIMEOUT):
        await request.app[DB_POOL].fetchval("SELECT 1")


async def _check_redis(request: web.Request) -> None:
    async with asyncio.timeout(CHECK_TIMEOUT):
        await request.app[REDIS].ping()


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    for name, check in (("database", _check_db), ("redis", _check_redis)):
        try:
            await check(request)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            checks[name] = f"unreachable: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return web.json_response({"status": "ready", "checks": checks})
    failing = ", ".join(k for k, v in checks.items() if v != "ok")
    return problem_response(
        503,
        "not-ready",
        "Service Unavailable",
        f"Not ready: {failing} unreachable.",
        headers={"Retry-After": "5"},
        extra={"checks": checks},
    )


class HealthStatus(msgspec.Struct):
    status: str


class ReadyStatus(msgspec.Struct):
    status: str
    checks: dict[str, str]


ENDPOINTS = (
    Endpoint("get", "/healthz", healthz, "healthz", "Liveness", "operations", auth=Auth.PUBLIC,
             response=HealthStatus),
    Endpoint("get", "/readyz", readyz, "readyz", "Readiness: database and Redis reachable",
             "operations", auth=Auth.PUBLIC, response=ReadyStatus, problems=(503,)),
)  # fmt: skip

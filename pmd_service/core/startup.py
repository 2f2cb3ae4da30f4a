"""What every process does first: logging, settings, error reporting, embedded servers, and
waiting for PostgreSQL and Redis. A setup problem ends the process with one line and no
traceback: exit status 2 for a bad setting, 1 for a database or Redis that stayed unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import NoReturn, TypedDict, Unpack

import asyncpg
from redis import asyncio as aioredis
from redis import exceptions as redis_errors

from . import error_reports, logs
from .db import connect
from .settings import ConfigError, Embedded, Settings, dev_requested, unknown_settings

log = logging.getLogger("pmd_service.startup")

# The pause between two tries grows from the first to the last (then stays there).
FIRST_PAUSE_SECONDS = 0.5
LONGEST_PAUSE_SECONDS = 5.0
# One try never waits longer than this for an answer (a host that drops packets).
TRY_TIMEOUT_SECONDS = 5.0


class StartupError(Exception):
    """A service the process needs stayed unreachable: one line, exit status 1."""


def load_settings(
    process: str,
    *,
    embedded: Embedded | None = None,
    needs_secret: bool = True,
    needs_redis: bool = True,
    serving: bool = False,
) -> Settings:
    """Settings for `process`, or exit with one line naming the bad or missing variable."""
    # Before anything can fail: even a bad setting is reported in the format asked for.
    logs.configure(logs.format_from_env())
    try:
        settings = Settings.from_env(
            embedded=embedded if dev_requested() else None,
            needs_secret=needs_secret,
            needs_redis=needs_redis,
            serving=serving,
        )
        logs.configure(settings.log_format)
        error_reports.configure(settings, process)  # Sentry, once settings and logging are set
    except ConfigError as exc:
        stop(f"{process}: configuration error: {exc}", status=2)
    warn_unknown_settings(process)
    return settings


def warn_unknown_settings(process: str) -> None:
    """One warning line naming every variable that looks like a setting and is none."""
    if unknown := unknown_settings():
        log.warning(
            "%s: ignored, not a setting: %s; docs/configuration.md lists every setting",
            process,
            ", ".join(unknown),
        )


def check_env(process: str) -> None:
    """For a command that needs no setting: every variable that is set is still checked."""
    logs.configure(logs.format_from_env())
    try:
        Settings.check_env()
    except ConfigError as exc:
        stop(f"{process}: configuration error: {exc}", status=2)
    warn_unknown_settings(process)


def stop(line: str, *, status: int = 1) -> NoReturn:
    """One line (`report`) and exit: no traceback for a setup problem."""
    report(line)
    sys.exit(status)


def report(line: str) -> None:
    """An error a person must act on: the line alone on a terminal, else a log line."""
    if logs.format_from_env() == "text" and sys.stderr.isatty():
        print(line, file=sys.stderr, flush=True)
    else:
        log.error("%s", line)


class Waiting(TypedDict, total=False):
    """How `services_reachable` waits (see there)."""

    wait: float | None
    redis: bool
    wait_hint: str


def wait_for_services(settings: Settings, process: str, **waiting: Unpack[Waiting]) -> None:
    """`services_reachable`, or exit 1 with one line."""
    try:
        asyncio.run(services_reachable(settings, process, **waiting))
    except StartupError as exc:
        stop(str(exc))


async def services_reachable(
    settings: Settings,
    process: str,
    *,
    wait: float | None = None,
    redis: bool = True,
    wait_hint: str = "STARTUP_WAIT_SECONDS",
) -> None:
    """Wait until PostgreSQL and Redis both answer, for at most `wait` seconds
    (STARTUP_WAIT_SECONDS unless given; `redis=False`: PostgreSQL only); a refused password is
    not waited for."""
    wait = settings.startup_wait_seconds if wait is None else wait
    deadline = time.monotonic() + wait
    pause = FIRST_PAUSE_SECONDS
    tries = 0
    names = "DATABASE_URL and REDIS_URL" if redis else "DATABASE_URL"
    answering = "PostgreSQL and Redis" if redis else "PostgreSQL"
    servers = "both servers run" if redis else "PostgreSQL runs"
    while True:
        tries += 1
        timeout = (
            TRY_TIMEOUT_SECONDS
            if wait == 0
            else max(0.5, min(TRY_TIMEOUT_SECONDS, deadline - time.monotonic()))
        )
        found = [await _postgres_problem(settings, process, timeout)]
        if redis:
            found.append(await _redis_problem(settings, process, timeout))
        down = [problem for problem in found if problem is not None]
        if not down:
            if tries > 1:
                log.info("%s: %s answer (try %d)", process, answering, tries)
            return
        left = deadline - time.monotonic()
        what = "; ".join(down)
        if left <= 0:
            if wait == 0:
                raise StartupError(
                    f"{process}: {what}. Check {names}, and that {servers}; to wait for "
                    f"{'them' if redis else 'it'}: {wait_hint}."
                )
            raise StartupError(
                f"{process}: gave up after {tries} tries in {wait:g} s ({wait_hint}): "
                f"{what}. Check {names}, and that {servers}."
            )
        pause = min(pause, left)
        log.warning("%s: %s (try %d; next in %.1f s)", process, what, tries, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_SECONDS)


async def _postgres_problem(settings: Settings, process: str, seconds: float) -> str | None:
    try:
        pooled = settings.database_pooler != "none"
        conn = await connect(
            settings.database_url, f"{process}-startup", pooled=pooled, timeout=seconds
        )
    except (TimeoutError, OSError, asyncpg.CannotConnectNowError) as exc:
        # CannotConnectNow: the server is starting up or shutting down.
        return f"PostgreSQL is unreachable ({_reason(exc)})"
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StartupError(f"{process}: PostgreSQL refused the connection: {exc}") from None
    await conn.close()
    return None


async def _redis_problem(settings: Settings, process: str, seconds: float) -> str | None:
    client = aioredis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=seconds, socket_timeout=seconds
    )
    try:
        await client.ping()
    except (redis_errors.AuthenticationError, redis_errors.ResponseError) as exc:
        raise StartupError(f"{process}: Redis refused the connection: {exc}") from None
    except redis_errors.BusyLoadingError:
        return "Redis is loading its data"
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        return f"Redis is unreachable ({_reason(exc)})"
    finally:
        await client.aclose()
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return logs.redact(" ".join(text.split()))[:200]

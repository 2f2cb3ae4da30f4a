"""asyncpg pools and connections: every connection names itself for pg_stat_activity."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg
import msgspec

from .asyncpg_adapter import DatabaseRefusing as DatabaseRefusing
from .asyncpg_adapter import PoolTimeout as PoolTimeout
from .asyncpg_adapter import gated_pool, is_driver_timeout, is_orphaned_cancel

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    from .settings import Settings

    # A plain connection or one borrowed from a pool: services accept either.
    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]


log = logging.getLogger(__name__)

T = TypeVar("T")


class _QuietOrphanedCancels:
    """The loop's exception handler, but a debug line for asyncpg's orphaned cancel."""

    def __init__(self, inner: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None):
        self.inner = inner or (lambda loop, context: loop.default_exception_handler(context))

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_orphaned_cancel(context):
            log.debug("a query's cancel request was itself cancelled (%s)", context["exception"])
        else:
            self.inner(loop, context)


def quiet_orphaned_cancels() -> None:
    """Installs `_QuietOrphanedCancels` on the running loop, once."""
    loop = asyncio.get_running_loop()
    current = loop.get_exception_handler()
    if not isinstance(current, _QuietOrphanedCancels):
        loop.set_exception_handler(_QuietOrphanedCancels(current))


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Both JSON types: the host's `users.roles` is `json`, the service's own columns `jsonb`.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda v: msgspec.json.encode(v).decode(),
            decoder=msgspec.json.decode,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: asyncpg's default query is a round trip with nothing to undo."""


# A session idle this long inside a transaction is ended by the database: a client cut off
# mid-transaction (its network, its host) would otherwise hold its locks, the events' order
# lock among them, until TCP gives up on it hours later. Below the 30 s command timeout, so a
# request waiting behind such a client is served.
IDLE_IN_TRANSACTION_SECONDS = 15

# For a transaction that waits on other things between its statements (a build's rows while
# the store takes the ZIP, the checks' store look-ups, the dev demo's drawing) and holds no
# lock a server's writer waits for.
SET_NO_IDLE_BOUND = "SET LOCAL idle_in_transaction_session_timeout = 0"


def _server_settings(
    application_name: str, search_path: str | None, *, pooled: bool
) -> dict[str, str]:
    """A pooler passes on only `application_name`: the rest is then the role's (its
    search_path, set by the operator; the idle bound, set by grants.py)."""
    found = {"application_name": application_name}
    if pooled:
        return found
    if search_path is not None:
        found["search_path"] = search_path
    found["idle_in_transaction_session_timeout"] = f"{IDLE_IN_TRANSACTION_SECONDS}s"
    return found


REFUSED_PAUSE = 0.5  # seconds

# EAI_AGAIN (a container network's DNS reloading) asks to be asked again; EAI_NONAME does not.
RESOLVER_PAUSES = (0.1, 0.25, 0.5, 1.0, 2.0)  # seconds


async def _connect_resolving(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect, asking again while the resolver says to (pools connect through it too)."""
    for pause in RESOLVER_PAUSES:
        try:
            return await asyncpg.connect(*args, **kwargs)
        except socket.gaierror as exc:
            if exc.errno != socket.EAI_AGAIN:
                raise
            log.info("the database's host name did not resolve (%s): trying again", exc)
            await asyncio.sleep(pause)
    return await asyncpg.connect(*args, **kwargs)


async def create_pool(
    dsn: str,
    application_name: str,
    *,
    search_path: str | None = None,
    min_size: int = 1,
    max_size: int = 10,
    pooler: bool = False,
    acquire_timeout: float | None = None,
    refused_pause: float = REFUSED_PAUSE,
) -> asyncpg.Pool:
    """`pooler`: `dsn` is a transaction-mode pooler, so nothing may outlive a transaction: no
    named prepared statements, and no search_path at start (`check_search_path` checks it)."""
    quiet_orphaned_cancels()
    extra: dict[str, Any] = {"statement_cache_size": 0} if pooler else {}
    pool = gated_pool(
        dsn,
        max_size=max_size,
        wait=acquire_timeout,
        refused_pause=refused_pause,
        min_size=min_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        reset=_keep_session,
        connect=_connect_resolving,
        command_timeout=30,
        server_settings=_server_settings(application_name, search_path, pooled=pooler),
        **extra,
    )
    await pool
    return pool


async def settings_pool(
    settings: Settings, application_name: str, *, min_size: int, max_size: int
) -> asyncpg.Pool:
    """create_pool as the settings configure it (the pooled URL, the pooler, the wait)."""
    return await create_pool(
        settings.database_url,
        application_name,
        search_path=settings.search_path,
        min_size=min(min_size, max_size),
        max_size=max_size,
        pooler=settings.database_pooler != "none",
        acquire_timeout=settings.db_acquire_timeout,
    )


async def connect(
    dsn: str,
    application_name: str,
    *,
    search_path: str | None = None,
    pooled: bool = False,
    **kwargs: Any,
) -> asyncpg.Connection:
    quiet_orphaned_cancels()
    settings = _server_settings(application_name, search_path, pooled=pooled)
    conn = await _connect_resolving(dsn, server_settings=settings, **kwargs)
    await _init_connection(conn)
    return conn


@asynccontextmanager
async def session(
    settings: Settings, pool: asyncpg.Pool, application_name: str
) -> AsyncIterator[Conn]:
    """A connection whose session is its own while held: pooled, or direct behind a pooler."""
    if settings.database_pooler == "none":
        async with pool.acquire() as conn:
            yield conn
        return
    direct = await connect(settings.direct_url, application_name, search_path=settings.search_path)
    try:
        yield direct
    finally:
        await direct.close()


# --- a pooler's search path ------------------------------------------------------------------


class DatabaseSetupError(Exception):
    """The database cannot serve this configuration; start-up stops with this one line."""


def _schemas(search_path: str) -> list[str]:
    return [part.strip().strip('"') for part in search_path.split(",") if part.strip()]


async def check_search_path(pool: asyncpg.Pool, settings: Settings) -> None:
    """Refuse to start when a pooler's search path (the role's) is not the service's."""
    found = await pool.fetchval("SELECT current_setting('search_path')")
    want = _schemas(settings.search_path)
    if _schemas(found)[: len(want)] != want:
        raise DatabaseSetupError(
            f"DATABASE_POOLER={settings.database_pooler}: the pooled connections' search_path is "
            f"{found!r}, not {settings.search_path!r}; a transaction-mode pooler cannot set it "
            f"per connection, so set it on the role: ALTER ROLE <user> SET search_path = "
            f"{settings.search_path}"
        )


# --- the connection budget -------------------------------------------------------------------

SQL_BUDGET = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int
         AS reserved,
       (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user) AS role_limit,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int
         AS in_use,
       (SELECT count(*) FROM pg_stat_activity WHERE usename = current_user)::int AS role_in_use
"""


@dataclass(frozen=True, slots=True)
class Budget:
    """What the database admits, read once at start."""

    max_connections: int
    reserved: int
    role_limit: int  # -1: none
    superuser: bool
    in_use: int  # client backends open now, the reader's own included
    role_in_use: int

    @property
    def allowed(self) -> int:
        """The most connections this role can ever hold at once (never the reserved slots)."""
        total = self.max_connections - self.reserved
        if self.role_limit >= 0 and not self.superuser:
            total = min(total, self.role_limit)
        return total


async def read_budget(dsn: str) -> Budget:
    conn = await _connect_resolving(dsn, server_settings={"application_name": "pmd-budget"})
    try:
        row = await conn.fetchrow(SQL_BUDGET)
    finally:
        await conn.close()
    assert row is not None
    return Budget(**dict(row))


def judge_budget(budget: Budget, needed: int, what: str, knobs: str = "DB_POOL_MAX") -> str | None:
    """Refuses a configuration that can never fit; warns of one that fits once others' go."""
    if needed > budget.allowed:
        limit = (
            f"the role's CONNECTION LIMIT {budget.role_limit}"
            if budget.role_limit >= 0 and budget.allowed == budget.role_limit
            else f"max_connections {budget.max_connections} minus {budget.reserved} reserved"
        )
        raise DatabaseSetupError(
            f"{what} need up to {needed} database connections, but the database allows "
            f"{budget.allowed} ({limit}); lower {knobs}, raise the database's limit, or put "
            "PgBouncer in front (DATABASE_POOLER=pgbouncer)"
        )
    # Our own reading connection is one of `in_use` and closed by now.
    free = budget.allowed - (budget.in_use - 1)
    if budget.role_limit >= 0 and not budget.superuser:
        free = min(free, budget.role_limit - (budget.role_in_use - 1))
    if needed > free:
        return (
            f"{what} may need up to {needed} database connections, and only {free} are free "
            "now; requests will be answered 503 when the pools cannot grow"
        )
    return None


def connections_needed(settings: Settings, processes: int, pool_max: int, listeners: int) -> int:
    """The connections `processes` processes take from the database: pools and LISTENs."""
    pooled = 0 if settings.database_pooler != "none" else pool_max
    return processes * (pooled + listeners)


async def check_budget(settings: Settings, needed: int, what: str, knobs: str) -> str | None:
    return judge_budget(await read_budget(settings.direct_url), needed, what, knobs)


# --- a database that refuses ----------------------------------------------------------------

_REFUSALS: tuple[type[BaseException], ...] = (
    asyncpg.TooManyConnectionsError,  # max_connections, or the role's CONNECTION LIMIT
    asyncpg.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.ConnectionDoesNotExistError,  # the connection died mid-query
    PoolTimeout,
    ConnectionError,  # refused, reset, aborted (OSError's socket errors); DatabaseRefusing
    socket.gaierror,  # the database's host name does not resolve
)


def database_refusal(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable, full or not answering, not that a query
    is wrong."""
    return isinstance(exc, _REFUSALS) or is_driver_timeout(exc)


# A generic plan cannot drop a filter's absent keys (NULL parameters); not named SQL_, since
# the tests that prepare every query cannot prepare a setting.
SET_CUSTOM_PLAN = "SET LOCAL plan_cache_mode = force_custom_plan"


async def fetch_planned(pool: asyncpg.Pool, sql: str, *args: object) -> list[asyncpg.Record]:
    """`pool.fetch` as the unnamed statement, which is planned for its parameters each time."""
    async with pool.acquire() as conn:
        statement = await conn.prepare(sql, name="")
        return await statement.fetch(*args)


@functools.cache
def _fields(struct: Callable[..., object]) -> tuple[str, ...]:
    return tuple(inspect.signature(struct).parameters)


def from_row(struct: Callable[..., T], row: asyncpg.Record, **given: Any) -> T:
    """A `struct` whose every field but those `given` is the row's column of the same name."""
    return struct(**{name: row[name] for name in _fields(struct) if name not in given}, **given)

"""The one place that leans on asyncpg beyond its documented API (as of ASYNCPG_VERSION; its test
fails the day asyncpg changes): `GatedPool`, `is_orphaned_cancel` (asyncpg#1310) and
`is_driver_timeout`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import asyncpg

ASYNCPG_VERSION = "0.32.0"  # the release these uses were read from

_ORPHANED_CANCEL = "unexpected connection_lost() call"


def is_orphaned_cancel(context: Mapping[str, Any]) -> bool:
    """Whether an event loop's exception `context` is asyncpg's orphaned cancel and nothing else."""
    exc = context.get("exception")
    return (
        context.get("message") == "Future exception was never retrieved"
        and isinstance(exc, ConnectionError)
        and str(exc) == _ORPHANED_CANCEL
    )


def is_driver_timeout(exc: BaseException) -> bool:
    """Whether `exc` is asyncpg's own timeout (a query past its command_timeout, a connect past
    its timeout), which asyncpg raises as a bare TimeoutError."""
    if not isinstance(exc, TimeoutError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg.")


class PoolTimeout(TimeoutError):
    """No pooled connection came free within DB_ACQUIRE_TIMEOUT: the database is saturated."""


class DatabaseRefusing(ConnectionError):
    """The database refused a new connection a moment ago: not asked again so soon."""


# What a database says when it will not take another connection now.
_CONNECT_REFUSALS: tuple[type[BaseException], ...] = (
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.PostgresConnectionError,
    OSError,
)


class GatedPool(asyncpg.Pool):
    """A pool whose acquire waits a bounded time for a free slot (then PoolTimeout), and fails at
    once (DatabaseRefusing) for a pause after the database refused a connection with none idle.

    The bound covers only the wait for a slot (a token queue as long as the pool), not the
    opening of a connection, which a busy event loop stretches (docs/architecture.md).
    """

    __slots__ = ("_held", "_pmd_refused", "_pmd_refused_pause", "_pmd_wait", "_slots")
    _pmd_wait: float | None
    _pmd_refused: tuple[float, str] | None  # until when (monotonic), and what the database said
    _pmd_refused_pause: float
    _slots: asyncio.Queue[None]  # a token per free slot: FIFO waiters, O(1) each
    _held: set[int]  # the connections handed out (by id), each holding one token

    def _gate(self, max_size: int, wait: float | None, refused_pause: float) -> None:
        self._pmd_wait, self._pmd_refused, self._pmd_refused_pause = wait, None, refused_pause
        self._slots = asyncio.Queue()
        for _ in range(max_size):
            self._slots.put_nowait(None)
        self._held = set()

    def acquire(self, *, timeout: float | None = None) -> Any:
        return _Acquiring(self, timeout)

    async def _take(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        refused = self._pmd_refused
        if refused is not None and time.monotonic() < refused[0] and self.get_idle_size() == 0:
            raise DatabaseRefusing(f"the database refused a connection just now ({refused[1]})")
        wait = self._pmd_wait if timeout is None else timeout
        try:
            # A token freed as the wait times out stays queued for the next (Queue.get's cancel).
            if self._slots.empty():
                await asyncio.wait_for(self._slots.get(), wait)
            else:
                self._slots.get_nowait()
        except TimeoutError:
            raise PoolTimeout(f"no database connection came free within {wait} s") from None
        try:
            # A token means a connection is free: this waits only to open it (connect timeout).
            conn = await super().acquire()
        except BaseException as exc:
            self._slots.put_nowait(None)
            if isinstance(exc, TimeoutError):  # asyncpg's connect timeout: a database too slow
                raise PoolTimeout("a new database connection could not be opened in time") from None
            if isinstance(exc, _CONNECT_REFUSALS):
                until = time.monotonic() + self._pmd_refused_pause
                self._pmd_refused = (until, f"{type(exc).__name__}: {exc}")
            raise
        self._pmd_refused = None
        self._held.add(id(conn))
        return conn

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            await super().release(connection, timeout=timeout)
        finally:
            if id(connection) in self._held:  # once, however often it is released
                self._held.discard(id(connection))
                self._slots.put_nowait(None)


class _Acquiring:
    """What `GatedPool.acquire()` returns, as asyncpg's does: awaited, or `async with`."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: GatedPool, timeout: float | None) -> None:
        self._pool, self._timeout, self._conn = pool, timeout, None

    def __await__(self) -> Any:
        return self._pool._take(self._timeout).__await__()

    async def __aenter__(self) -> Any:
        self._conn = await self._pool._take(self._timeout)
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        await self._pool.release(conn)


def gated_pool(
    dsn: str, *, max_size: int, wait: float | None, refused_pause: float, **options: Any
) -> GatedPool:
    """A GatedPool to be awaited to open; `options` are `asyncpg.create_pool`'s."""
    pool = GatedPool(
        dsn,
        max_size=max_size,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        **options,
    )
    pool._gate(max_size, wait, refused_pause)
    return pool

"""A client cut off from the database mid-transaction, as a cut network or a lost host leaves it:
the database ends its session after IDLE_IN_TRANSACTION_SECONDS, so the locks it held (the
events' order lock among them) do not stall every other writer; and a query the database does
not answer in time is an outage (503), not a failure of the service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from asyncpg.pool import PoolConnectionProxy

import pmd_service.core.db as db
from pmd_service.core.db import SET_NO_IDLE_BOUND, create_pool, database_refusal
from pmd_service.core.locks import AdvisoryLock

SQL_TAKE = "SELECT pg_advisory_xact_lock($1)"
SQL_TRY = "SELECT pg_try_advisory_xact_lock($1)"


@pytest.fixture
async def short_bound(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> AsyncIterator[asyncpg.Pool]:
    monkeypatch.setattr(db, "IDLE_IN_TRANSACTION_SECONDS", 1)
    made = await create_pool(database_url, "pmd-test-cut", min_size=1, max_size=2)
    yield made
    await made.close()


async def _closed(conn: PoolConnectionProxy[asyncpg.Record]) -> None:
    """Until `conn` (a pool's) is closed, or given back to its pool for being closed."""
    while True:
        try:
            if conn.is_closed():
                return
        except asyncpg.InterfaceError:  # released: the pool saw it close
            return
        await asyncio.sleep(0.01)


async def test_a_transaction_left_idle_gives_its_locks_back(
    short_bound: asyncpg.Pool, database_url: str
) -> None:
    other = await asyncpg.connect(database_url)
    try:
        async with short_bound.acquire() as cut_off:
            stuck = cut_off.transaction()
            await stuck.start()
            await cut_off.fetchval(SQL_TAKE, AdvisoryLock.EVENT_ORDER)
            async with other.transaction():
                assert await other.fetchval(SQL_TRY, AdvisoryLock.EVENT_ORDER) is False
            # Nothing more comes from the cut-off client: the database ends its session.
            async with other.transaction():
                await asyncio.wait_for(other.fetchval(SQL_TAKE, AdvisoryLock.EVENT_ORDER), 10)
            # The client sees its connection closed once the database's goodbye reaches it (a
            # client back before that is answered "another operation is in progress").
            await asyncio.wait_for(_closed(cut_off), 10)
        # The pool serves again with a connection of its own.
        assert await short_bound.fetchval("SELECT 1") == 1
    finally:
        await other.close()


async def test_a_read_only_transaction_that_waits_on_other_things_is_left_alone(
    short_bound: asyncpg.Pool,
) -> None:
    async with short_bound.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(SET_NO_IDLE_BOUND)
        await asyncio.sleep(2.5)
        assert await conn.fetchval("SELECT 1") == 1


async def test_a_query_past_its_command_timeout_is_the_database_not_answering(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url, command_timeout=0.2)
    try:
        with pytest.raises(TimeoutError) as raised:
            await conn.execute("SELECT pg_sleep(2)")
    finally:
        conn.terminate()
    assert database_refusal(raised.value)
    # A timeout of anything else (the store, a client) is not the database's.
    with pytest.raises(TimeoutError) as elsewhere:
        await asyncio.wait_for(asyncio.sleep(1), 0.01)
    assert not database_refusal(elsewhere.value)

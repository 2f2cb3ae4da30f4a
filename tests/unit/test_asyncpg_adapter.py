"""What pmd_service/core/asyncpg_adapter.py relies on in asyncpg, checked against the asyncpg
installed: each test fails the day asyncpg changes it, so an upgrade re-reads the adapter first.
(The gate's behaviour against a real database: tests/api/web/test_db_capacity.py.)"""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version

import asyncpg
import asyncpg.connect_utils

from pmd_service.core.asyncpg_adapter import (
    ASYNCPG_VERSION,
    GatedPool,
    gated_pool,
    is_orphaned_cancel,
)

# The pool's methods that hand out, take back or manage connections rather than run a query.
_NOT_QUERIES = {
    "acquire",
    "release",
    "close",
    "terminate",
    "expire_connections",
    "set_connect_args",
    "get_size",
    "get_init_size",
    "get_min_size",
    "get_max_size",
    "get_idle_size",
    "is_closing",
}


def test_the_installed_asyncpg_is_the_one_the_adapter_was_read_from() -> None:
    assert version("asyncpg") == ASYNCPG_VERSION, "re-read core/asyncpg_adapter.py against it"


def test_every_query_method_of_the_pool_acquires_through_self_acquire() -> None:
    """GatedPool gates `acquire`: a query method that reached a connection another way (or a
    new one) would bypass the bound on the wait."""
    public = {
        name
        for name, value in vars(asyncpg.Pool).items()
        if not name.startswith("_") and callable(value)
    }
    queries = public - _NOT_QUERIES
    assert queries == {
        "execute",
        "executemany",
        "fetch",
        "fetchmany",
        "fetchrow",
        "fetchval",
        "copy_from_table",
        "copy_from_query",
        "copy_to_table",
        "copy_records_to_table",
    }, "asyncpg's pool has new methods: see whether they go through self.acquire()"
    for name in queries:
        source = inspect.getsource(getattr(asyncpg.Pool, name))
        assert "async with self.acquire() as con" in source, name
        assert "_acquire(" not in source, name


def test_the_pool_is_made_with_the_constructor_create_pool_calls() -> None:
    """gated_pool calls asyncpg.Pool's constructor itself, naming what create_pool names."""
    parameters = inspect.signature(asyncpg.Pool.__init__).parameters
    required = {
        name
        for name, p in parameters.items()
        if p.kind is p.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    }
    assert required == {
        "min_size",
        "max_size",
        "max_queries",
        "max_inactive_connection_lifetime",
        "loop",
        "connection_class",
        "record_class",
    }
    for name in ("connect", "init", "reset"):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert any(p.kind is p.VAR_KEYWORD for p in parameters.values())  # connect's own options
    made = inspect.getsource(asyncpg.create_pool)
    assert "return Pool(" in made
    for name in ("connection_class=connection_class", "record_class=record_class", "loop=loop"):
        assert name in made, name


def test_the_gate_s_slots_are_its_own() -> None:
    ours = set(GatedPool.__slots__)
    assert not ours & set(asyncpg.Pool.__slots__), "asyncpg's pool uses these names now"


async def test_a_gated_pool_is_asyncpg_s_pool_with_its_classes() -> None:
    pool = gated_pool(
        "postgresql://nobody@127.0.0.1:1/none",
        max_size=2,
        wait=1.0,
        refused_pause=0.5,
        min_size=0,
        max_queries=10,
        max_inactive_connection_lifetime=0.0,
    )
    assert isinstance(pool, asyncpg.Pool)
    assert pool.get_max_size() == 2 and pool.get_min_size() == 0


def test_a_cancel_cancelled_during_its_tls_attempt_fails_with_the_text_the_adapter_knows() -> None:
    source = inspect.getsource(asyncpg.connect_utils.TLSUpgradeProto.connection_lost)
    assert "exc = ConnectionError('unexpected connection_lost() call')" in source, source
    assert "self.on_data.set_exception(exc)" in source, source


def test_only_the_orphaned_cancel_is_recognised() -> None:
    orphaned = ConnectionError("unexpected connection_lost() call")
    never_retrieved = "Future exception was never retrieved"
    assert is_orphaned_cancel({"message": never_retrieved, "exception": orphaned})
    assert not is_orphaned_cancel(
        {"message": "Task exception was never retrieved", "exception": orphaned}
    )
    assert not is_orphaned_cancel(
        {"message": never_retrieved, "exception": ConnectionError("connection reset")}
    )
    assert not is_orphaned_cancel(
        {"message": never_retrieved, "exception": asyncio.CancelledError()}
    )
    assert not is_orphaned_cancel({"message": never_retrieved})

"""A resolver that says "try again" (EAI_AGAIN, as a container network's DNS does while it
reloads) is asked again before a connection fails; a name that does not exist is not
(pmd_service/core/db.py). The resolver's answers are injected; the name it resolves to leads,
through a TCP relay, to the suite's real PostgreSQL, which then answers a query."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from pmd_service.core import db
from tests.helpers import DatabaseRelay, on_port

NAME = "postgres.flaky.test"


class Resolver:
    """socket.getaddrinfo for NAME: `failures` answers of `errno`, then 127.0.0.1."""

    def __init__(self, failures: int, errno: int) -> None:
        self.failures, self.errno, self.asked = failures, errno, 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return self.real(host, port, *args, **kwargs)
        self.asked += 1
        if self.asked <= self.failures:
            raise socket.gaierror(self.errno, "Temporary failure in name resolution")
        return self.real("127.0.0.1", port, *args, **kwargs)


@pytest.fixture
async def named_url(database_url: str) -> AsyncIterator[str]:
    """The suite's database over TCP, its host named NAME (which only the Resolver knows)."""
    relay = DatabaseRelay(database_url)
    await relay.open()
    parts = urlsplit(on_port(database_url, relay.port))
    yield urlunsplit(parts._replace(netloc=parts.netloc.replace("127.0.0.1", NAME)))
    await relay.cut()


def _resolver(monkeypatch: pytest.MonkeyPatch, failures: int, errno: int) -> Resolver:
    resolver = Resolver(failures, errno)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(db, "RESOLVER_PAUSES", (0.01,) * 5)
    return resolver


@pytest.mark.parametrize("failures", [1, 5])
async def test_a_resolver_that_says_try_again_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, named_url: str, failures: int
) -> None:
    resolver = _resolver(monkeypatch, failures, socket.EAI_AGAIN)
    conn = await db.connect(named_url, "test", timeout=10)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    assert resolver.asked == failures + 1


async def test_a_pool_connects_through_the_same_retry(
    monkeypatch: pytest.MonkeyPatch, named_url: str
) -> None:
    resolver = _resolver(monkeypatch, 2, socket.EAI_AGAIN)
    pool = await db.create_pool(named_url, "test", min_size=1, max_size=1)
    try:
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
    assert resolver.asked == 3


async def test_a_resolver_that_keeps_failing_fails_the_connect_after_its_pauses(
    monkeypatch: pytest.MonkeyPatch, named_url: str
) -> None:
    resolver = _resolver(monkeypatch, 100, socket.EAI_AGAIN)
    with pytest.raises(socket.gaierror) as failed:
        await db.connect(named_url, "test", timeout=10)
    assert failed.value.errno == socket.EAI_AGAIN
    assert resolver.asked == 6  # five pauses, six answers


async def test_a_name_that_does_not_exist_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch, named_url: str
) -> None:
    resolver = _resolver(monkeypatch, 100, socket.EAI_NONAME)
    with pytest.raises(socket.gaierror):
        await db.connect(named_url, "test", timeout=10)
    assert resolver.asked == 1

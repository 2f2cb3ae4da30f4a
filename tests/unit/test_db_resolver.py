"""A resolver that says "try again" (EAI_AGAIN, as a container network's DNS does while it
reloads) is asked again before a connection fails; a name that does not exist is not
(pmd_service/core/db.py). The resolver's answers are injected; the address it gives is a real
TCP listener, which sees the connection arrive once resolution succeeded."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import asyncpg
import pytest

from pmd_service.core import db

NAME = "postgres.flaky.test"


class Resolver:
    """socket.getaddrinfo for NAME: `failures` answers of `errno`, then 127.0.0.1."""

    def __init__(self, failures: int, errno: int, port: int) -> None:
        self.failures, self.errno, self.port, self.asked = failures, errno, port, 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return self.real(host, port, *args, **kwargs)
        self.asked += 1
        if self.asked <= self.failures:
            raise socket.gaierror(self.errno, "Temporary failure in name resolution")
        return self.real("127.0.0.1", self.port, *args, **kwargs)


async def _listener() -> tuple[asyncio.Server, list[int]]:
    """A TCP server that counts connections and closes them (not PostgreSQL: asyncpg fails
    after reaching it, which is what the test needs to see)."""
    arrived: list[int] = []

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        arrived.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    return server, arrived


@pytest.mark.parametrize("failures", [1, 3])
async def test_a_resolver_that_says_try_again_is_asked_again(
    monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    server, arrived = await _listener()
    port = server.sockets[0].getsockname()[1]
    resolver = Resolver(failures, socket.EAI_AGAIN, port)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(db, "RESOLVER_PAUSES", (0.01,) * 5)
    async with server:
        with pytest.raises((ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            await db.connect(f"postgresql://u@{NAME}:{port}/d?sslmode=disable", "test", timeout=5)
    assert resolver.asked == failures + 1
    assert arrived, "the connection never reached the resolved address"


async def test_a_resolver_that_keeps_failing_fails_the_connect_after_its_pauses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = Resolver(100, socket.EAI_AGAIN, 1)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(db, "RESOLVER_PAUSES", (0.01,) * 5)
    with pytest.raises(socket.gaierror) as failed:
        await db.connect(f"postgresql://u@{NAME}:5432/d?sslmode=disable", "test", timeout=5)
    assert failed.value.errno == socket.EAI_AGAIN
    assert resolver.asked == 6  # five pauses, six answers


async def test_a_name_that_does_not_exist_is_not_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = Resolver(100, socket.EAI_NONAME, 1)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(socket.gaierror):
        await db.connect(f"postgresql://u@{NAME}:5432/d?sslmode=disable", "test", timeout=5)
    assert resolver.asked == 1


async def test_a_pool_connects_through_the_same_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    server, arrived = await _listener()
    port = server.sockets[0].getsockname()[1]
    resolver = Resolver(2, socket.EAI_AGAIN, port)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(db, "RESOLVER_PAUSES", (0.01,) * 5)
    async with server:
        with pytest.raises((ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            await db.create_pool(f"postgresql://u@{NAME}:{port}/d?sslmode=disable", "test")
    assert resolver.asked == 3
    assert arrived

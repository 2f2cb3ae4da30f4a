"""What the download tests share: the app served as in production, a ready BDR, raw reads."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import obstore
from pytest_aiohttp import AiohttpClient

from pmd_service.core.objects import open_store
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from tests.helpers import Client, ServedLikeServerPy, after_worker

BIG = 32 * 2**20  # more than loopback's socket buffers can take, both ends together
HANG_GUARD = 60  # a bound on waits that would otherwise hang; never a timing assertion


async def start(
    aiohttp_client: AiohttpClient, settings: Settings, *, cancels: bool = False
) -> Client:
    """The app on a loopback port, as `server.py` runs it; `cancels`: aiohttp's test server."""
    app = create_app(settings)
    client: Client = await aiohttp_client(app if cancels else ServedLikeServerPy(app))
    return client


async def ready_zip(
    client: Client,
    factory: Factory,
    settings: Settings,
    owner: UserRow | None = None,
    size: int | None = None,
) -> tuple[UserRow, str, bytes]:
    """A ready BDR built by the worker: (owner, URL, bytes); `size`: that many random bytes."""
    owner = owner or await factory.user()
    post = await factory.post(owner)
    item = await after_worker(client, settings, owner, [post.id])
    assert item["status"] == "ready", item
    file_path = await factory.pool.fetchval(
        "SELECT file_path FROM batch_download_requests WHERE id = $1::uuid", item["id"]
    )
    if size is not None:
        data = os.urandom(size)
        if settings.zip_bucket is not None:
            store = open_store(settings.zip_bucket, settings.s3_access)
            await obstore.put_async(store, file_path.removeprefix("bdr/"), data)
        else:
            (settings.zip_path / file_path.removeprefix("bdr/")).write_bytes(data)
        await factory.pool.execute(
            "UPDATE batch_download_requests SET file_size_bytes = $2 WHERE id = $1::uuid",
            item["id"],
            size,
        )
    resp = await client.get(item["download_url"], headers=owner.auth)
    assert resp.status == 200
    return owner, item["download_url"], await resp.read()


async def open_raw(client: Client, url: str, user: UserRow, rcvbuf: int | None = None) -> Any:
    """A raw connection that sent the GET and read the status line and headers only."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(
        sock, (str(client.server.host), client.server.port)
    )
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
    auth = user.auth["Authorization"]
    writer.write(f"GET {url} HTTP/1.1\r\nHost: pmd\r\nAuthorization: {auth}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANG_GUARD)
    return reader, writer, head.decode()

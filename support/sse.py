"""The SSE client: `read_message`, the WHATWG event-stream parser every reader uses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

SSE = "/api/pmd/bdr/sse"


@dataclass
class Message:
    event: str | None = None
    id: str | None = None
    data: str | None = None
    retry: int | None = None
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        assert self.data is not None
        value: dict[str, Any] = json.loads(self.data)
        return value


async def read_message(
    content: aiohttp.StreamReader, within: float | None = None
) -> Message | None:
    """The next message, or None at the end of the stream; `within`: seconds for each line."""
    msg = Message()
    started = False
    while raw := await asyncio.wait_for(content.readline(), within):
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if started:
                return msg
            continue
        started = True
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            msg.data = value if msg.data is None else f"{msg.data}\n{value}"
        elif name in ("", "event", "id"):
            setattr(msg, name or "comment", value)  # a line ": text" is a comment
        elif name == "retry":
            msg.retry = int(value)
    return None


class Stream:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.last_event_id: str | None = None

    async def next(self, within: float | None = 10) -> Message | None:
        try:
            msg = await read_message(self.resp.content, within)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            return None
        if msg is not None and msg.id is not None:
            self.last_event_id = msg.id
        return msg

    async def until(self, done: Callable[[Message], bool], within: float = 10) -> list[Message]:
        """Messages up to and including the first for which `done` is true (pings dropped)."""
        out: list[Message] = []
        deadline = time.monotonic() + within
        while True:
            msg = await self.next(max(0.1, deadline - time.monotonic()))
            assert msg is not None, f"stream ended; got {[(m.event, m.id) for m in out]}"
            if msg.comment is None:
                out.append(msg)
            if done(msg):
                return out

    async def opening(self) -> list[Message]:
        """retry, snapshot (or missed events), connected."""
        return await self.until(lambda m: m.event == "connected")

    async def updates(self, n: int, within: float = 15) -> list[Message]:
        """The next `n` bdr_update events (others dropped)."""
        got: list[Message] = []
        deadline = time.monotonic() + within
        while len(got) < n:
            msg = await self.next(max(0.1, deadline - time.monotonic()))
            assert msg is not None, f"stream ended after {len(got)} of {n} updates"
            if msg.event == "bdr_update":
                got.append(msg)
        return got

    async def ended(self, within: float = 10) -> list[Message]:
        out: list[Message] = []
        while (msg := await self.next(within)) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        self.resp.close()


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> AsyncIterator[Stream]:
    resp = await session.get(url, headers=headers, params=params)
    try:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        yield Stream(resp)
    finally:
        resp.close()

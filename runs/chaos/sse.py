"""The chaos run's SSE clients: what a page's EventSource does, through either server."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

import aiohttp

from runs.chaos.procs import Proc
from runs.chaos.seed import SeedUser
from runs.chaos.workload import CONNECTION_ERRORS, Api, label
from support.sse import read_message


class SseClient:
    """What a page's EventSource does: keep a view per BDR from `bdr_update`s, resume with
    Last-Event-ID after any disconnect, start over on `reset`. It keeps the id of every
    `bdr_update` too: after a rolling deploy it must hold every event of its user since the
    workload began, none twice (runs/cluster/client.py)."""

    def __init__(self, api: Api, user: SeedUser, name: str, home: int, ticket: bool) -> None:
        self.api, self.user, self.name, self.home, self.ticket = api, user, name, home, ticket
        self.view: dict[str, dict[str, Any]] = {}
        self.ids: list[int] = []
        self.last_id: str | None = None
        self.connects = 0
        self.resets = 0
        self.events = 0
        self.ends: Counter[str] = Counter()
        self.connected = False
        self.where: int | None = None  # the server it is connected to

    async def run(self) -> None:
        server = self.home
        while True:
            try:
                why = await self.session(server)
            except CONNECTION_ERRORS as exc:
                why = type(exc).__name__
                self.api.ledger.conn_errors[self.api.servers[server].name] += 1
            self.connected = False
            self.where = None
            self.ends[why] += 1
            if why != "ok":  # try the other replica next, as a load balancer would
                server = (server + 1) % len(self.api.servers)
            await asyncio.sleep(random.uniform(0.3, 1.2))

    async def _ticket(self, server: Proc) -> str | None:
        try:
            a = await self.api.once(
                server, "POST", "/api/pmd/bdr/sse-ticket", headers=self.user.auth
            )
        except CONNECTION_ERRORS:
            return None
        return str(a.json()["ticket"]) if a.status == 200 else None

    async def session(self, i: int) -> str:
        server = self.api.servers[i]
        headers: dict[str, str] = {}
        query = ""
        ticket = await self._ticket(server) if self.ticket else None
        if ticket is not None:
            query = f"?ticket={ticket}" + (f"&last_event_id={self.last_id}" if self.last_id else "")
        else:  # Bearer (or Redis down: the 503's advice is to send the token instead)
            headers = dict(self.user.auth)
            if self.last_id:
                headers["Last-Event-ID"] = self.last_id
        path = "/api/pmd/bdr/sse" + query
        started = time.monotonic()
        async with self.api.http.get(
            server.base + path, headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=40),
        ) as resp:  # fmt: skip
            self.api.ledger.statuses[(server.name, label("GET", path), resp.status)] += 1
            if resp.status != 200:
                body = await resp.read()
                if resp.status >= 500:
                    self.api.classify(server, label("GET", path), resp.status, body, started)
                return f"status {resp.status}"
            self.connects += 1
            self.where = i
            if self.last_id is None:
                self.view.clear()  # a snapshot follows
            while (msg := await read_message(resp.content)) is not None:
                # As EventSource: an id counts once its whole event has arrived.
                if msg.id is not None:
                    self.last_id = msg.id
                if msg.data is not None:
                    self._dispatch(msg.event or "message", msg.data)
            return "ok"  # the server ended it (shutdown, overflow)

    def _dispatch(self, event: str, data: str) -> None:
        if event == "bdr_update":
            item = json.loads(data)
            self.view[item["id"]] = item
            self.events += 1
            if self.last_id is not None:
                self.ids.append(int(self.last_id))
        elif event == "reset":
            self.resets += 1
            self.view.clear()
        elif event == "connected":
            self.connected = True


async def start_streams(clients: list[SseClient], within: float) -> list[asyncio.Task[None]]:
    """Each client's task, once every client is connected (or `within` s have passed)."""
    tasks = [asyncio.create_task(c.run()) for c in clients]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not all(c.connected for c in clients):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return tasks

"""The chaos run's SSE clients: what a page's EventSource does, through either server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from typing import Any

import aiohttp

from runs.chaos.seed import SeedUser
from runs.chaos.workload import CONNECTION_ERRORS, Api, label
from support.sse import read_message


class SseClient:
    """A view per BDR kept from `bdr_update`s, resumed with Last-Event-ID, reset on `reset`."""

    def __init__(self, api: Api, user: SeedUser, name: str, home: int, ticket: bool) -> None:
        self.api, self.user, self.name, self.home, self.ticket = api, user, name, home, ticket
        self.view: dict[str, dict[str, Any]] = {}
        self.ids: list[int] = []
        self.last_id: str | None = None
        self.connects = self.resets = self.events = 0
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
            self.connected, self.where = False, None
            self.ends[why] += 1
            if why != "ok":  # try the other replica next, as a load balancer would
                server = (server + 1) % len(self.api.servers)
            await asyncio.sleep(random.uniform(0.3, 1.2))

    async def session(self, i: int) -> str:
        server, headers, query = self.api.servers[i], dict(self.user.auth), ""
        ticket = None
        if self.ticket:
            with contextlib.suppress(*CONNECTION_ERRORS):
                a = await self.api.once(server, "POST", "/api/pmd/bdr/sse-ticket", headers=headers)
                ticket = str(a.json()["ticket"]) if a.status == 200 else None
        if ticket is not None:
            query = f"?ticket={ticket}" + (f"&last_event_id={self.last_id}" if self.last_id else "")
            headers = {}
        elif self.last_id:  # Bearer (or Redis down: the 503's advice is to send the token)
            headers["Last-Event-ID"] = self.last_id
        name, started = label("GET", "/api/pmd/bdr/sse" + query), time.monotonic()
        async with self.api.http.get(
            server.base + "/api/pmd/bdr/sse" + query,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=40),
        ) as resp:
            self.api.ledger.statuses[resp.status] += 1
            if resp.status != 200:
                body = await resp.read()
                if resp.status >= 500:
                    self.api.classify(server, name, resp.status, body, started)
                return f"status {resp.status}"
            self.connects += 1
            self.where = i
            if self.last_id is None:
                self.view.clear()  # a snapshot follows
            while (msg := await read_message(resp.content)) is not None:
                if msg.id is not None:  # as EventSource: once its whole event has arrived
                    self.last_id = msg.id
                if msg.data is None:
                    continue
                if msg.event in ("bdr_update", "export_update") and self.last_id is not None:
                    self.ids.append(int(self.last_id))  # an export's id counts as a BDR's does
                if msg.event == "bdr_update":
                    item = json.loads(msg.data)
                    self.view[item["id"]] = item
                    self.events += 1
                elif msg.event == "reset":
                    self.resets += 1
                    self.view.clear()
                elif msg.event == "connected":
                    self.connected = True
            return "ok"  # the server ended it (shutdown, overflow)


async def start_streams(clients: list[SseClient], within: float) -> list[asyncio.Task[None]]:
    """Each client's task, once every client is connected (or `within` s have passed)."""
    tasks = [asyncio.create_task(c.run()) for c in clients]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and not all(c.connected for c in clients):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return tasks

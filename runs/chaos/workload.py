"""The chaos run's clients: an HTTP client booking every answer, and one actor per user."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import obstore
from multidict import CIMultiDict
from obstore.store import ObjectStore

from runs.chaos.procs import Proc, Spans, during
from runs.chaos.seed import Seed, SeedUser, zip_problems

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TERMINAL = {"ready", "failed", "expired", "cancelled"}
# Endpoints that answer 503 by contract while Redis is unreachable (tickets live in Redis).
REDIS_DEPENDENT = {"POST /api/pmd/bdr/sse-ticket", "GET /api/pmd/bdr/sse?ticket", "GET /readyz"}
CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
DOWNLOAD_FAILED = "download failed: "  # marks a violation as a failed download
SERVER_ERROR = "server error: "  # and one as a 5xx that is none of the documented 503s
Plan = list[tuple[float, Callable[[], Coroutine[Any, Any, None]]]]


@dataclass
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Ledger:
    t0: float
    statuses: Counter[int] = field(default_factory=Counter)
    conn_errors: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    redis_down: Spans = field(default_factory=list)
    disk_full: Spans = field(default_factory=list)
    store_down: Spans = field(default_factory=list)
    pooler_paused: Spans = field(default_factory=list)
    worker_kills: list[datetime] = field(default_factory=list)  # each SIGKILL of workers, UTC
    seen_bdrs: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    created_at: list[float] = field(default_factory=list)  # seconds into the workload

    def say(self, text: str) -> None:
        print(f"  [+{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def violation(self, text: str) -> None:
        self.violations.append(f"+{time.monotonic() - self.t0:6.1f}s {text}")

    def counted(self, prefix: str) -> int:
        return sum(n for k, n in self.counts.items() if k.startswith(prefix))

    def download_failed(self, text: str) -> None:
        self.violation(DOWNLOAD_FAILED + text)

    def store_was_down(self, t: float | None = None) -> bool:
        return during(self.store_down, time.monotonic() if t is None else t, 5.0)


def label(method: str, path: str) -> str:
    path, _, query = path.partition("?")
    name = f"{method} {UUID_RE.sub('{id}', path)}"
    return name + "?ticket" if "ticket=" in query else name


class Api:
    def __init__(self, http: aiohttp.ClientSession, servers: list[Proc], ledger: Ledger) -> None:
        self.http, self.servers, self.ledger = http, servers, ledger

    async def once(self, server: Proc, method: str, path: str, **kw: Any) -> Answer:
        started, name = time.monotonic(), label(method, path)
        try:
            async with self.http.request(
                method,
                server.base + path,
                timeout=aiohttp.ClientTimeout(total=60),
                allow_redirects=False,
                **kw,
            ) as resp:
                body = await resp.read()
        except CONNECTION_ERRORS as exc:
            self.ledger.conn_errors[server.name] += 1
            if name.endswith("/download"):
                self.download_cut(server, name, exc, started)
            raise
        self.ledger.statuses[resp.status] += 1
        if resp.status >= 500:
            self.classify(server, name, resp.status, body, started)
        return Answer(resp.status, CIMultiDict(resp.headers), body)

    def download_cut(self, server: Proc, name: str, exc: Exception, started: float) -> None:
        """A download cut: allowed if refused or cut by a stopping server; `call` retries it."""
        if isinstance(exc, aiohttp.ClientConnectorError):
            refused = "downloads refused by a server that was down (sent to the other)"
            self.ledger.counts[refused] += 1
        elif server.in_shutdown(started) or server.in_shutdown(time.monotonic()):
            self.ledger.counts["downloads cut by a stopping server (retried on the other)"] += 1
        else:
            self.ledger.download_failed(f"{name} on {server.name}: {exc!r}")

    def classify(self, server: Proc, name: str, status: int, body: bytes, started: float) -> None:
        """A 5xx: one of the documented 503s, counted by kind, or a violation."""
        led, t, unavailable = self.ledger, started, status == 503
        if unavailable and (server.in_shutdown(t) or server.in_shutdown(time.monotonic())):
            led.counts["503s from a server shutting down"] += 1
        elif unavailable and (
            (name in REDIS_DEPENDENT and during(led.redis_down, t, 5))
            # A HEAD answer has no body to say why.
            or (
                name.endswith("/download")
                and led.store_was_down(t)
                and (b"store-unavailable" in body or name.startswith("HEAD "))
            )
        ):
            led.counts[f"documented 503s while Redis or the store was down: {name}"] += 1
        elif unavailable and name == "GET /readyz" and during(led.pooler_paused, t, 2):
            # Its database check waits 2 s: a transaction PgBouncer holds is "not ready".
            led.counts[f"documented 503s while PgBouncer was paused: {name}"] += 1
        elif (
            unavailable
            and name == "POST /api/pmd/bdr"
            and b"low-disk-space" in body
            and during(led.disk_full, t, 2)
        ):
            led.counts["new BDRs refused (503) while the disk was full"] += 1
        else:
            led.violation(f"{SERVER_ERROR}{status} from {server.name}: {name}: {body[:300]!r}")

    async def call(self, method: str, path: str, **kw: Any) -> Answer | None:
        """Through a random server; a failed GET or HEAD moves on, another method's is None."""
        n = len(self.servers)
        first = i = random.randrange(n)
        while True:
            try:
                return await self.once(self.servers[i % n], method, path, **kw)
            except CONNECTION_ERRORS:
                if method not in ("GET", "HEAD"):
                    return None
            i += 1
            if (i - first) % n == 0:
                await asyncio.sleep(1)


@dataclass
class Injector:
    ledger: Ledger
    api: Api
    pool: asyncpg.Pool

    def say(self, text: str) -> None:
        self.ledger.say(text)

    async def request(self, user: SeedUser, ids: list[int], **flags: bool) -> str | None:
        body = {"post_ids": ids, **flags}
        a = await self.api.call("POST", "/api/pmd/bdr", json=body, headers=user.auth)
        if a is None or a.status != 202:
            return None
        self.ledger.seen_bdrs.add(a.json()["id"])
        return str(a.json()["id"])

    async def until_ready(self, ids: list[str], within: float) -> list[asyncpg.Record]:
        deadline = time.monotonic() + within
        while True:
            rows = await self.pool.fetch(
                "SELECT id::text, status, file_sha256 FROM batch_download_requests"
                " WHERE id = ANY($1::uuid[]) AND status = 'ready'",
                ids,
            )
            if len(rows) == len(ids) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.3)


@dataclass
class PostState:
    hidden: bool = False
    deleted: bool = False
    license: int | None = None


@dataclass
class Actor:
    """One user's page: one request at a time, so its model of its posts stays exact."""

    api: Api
    pool: asyncpg.Pool
    seed: Seed
    user: SeedUser
    every: float  # seconds between BDR requests, on average
    bdr_root: Path
    zip_store: ObjectStore | None = None  # ZIPs in a bucket with --store
    break_downloads: bool = False
    next_create: float = 0.0
    mine: dict[str, str] = field(default_factory=dict)  # BDR id -> last status seen
    limited: bool = False

    def __post_init__(self) -> None:
        self.l, self.rng = self.api.ledger, random.Random(self.user.id)
        self.model = {pid: PostState() for pid in self.user.actions + self.user.doomed}

    async def run(self, until: float) -> None:
        ops = {
            self.list_posts: 3.0,
            self.action: 3.0,
            self.create: 2.0,
            self.cancel: 0.6,
            self.download: 2.0,
            self.list_bdrs: 1.0,
            self.readyz: 0.2,
            self.ticket: 0.3,
        }
        while time.monotonic() < until:
            op = self.rng.choices(list(ops), list(ops.values()))[0]
            if op == self.create:
                if time.monotonic() < self.next_create or (
                    self.limited and self.rng.random() < 0.8
                ):
                    op = self.list_bdrs  # told "come back tomorrow", a person mostly stops asking
                else:
                    self.next_create = time.monotonic() + self.every * self.rng.uniform(0.5, 1.5)
            try:
                await op()
            except Exception as exc:  # a client bug must not end the run silently
                self.l.violation(f"client error in {op.__name__} of {self.user.handle}: {exc!r}")
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))

    async def list_posts(self) -> None:
        query = "/api/pmd/posts?" + ("deleted=true&" if self.rng.random() < 0.2 else "")
        cursor: str | None = None
        for _ in range(self.rng.randint(1, 3)):
            q = f"{query}limit={self.rng.randint(20, 200)}"
            q += f"&cursor={cursor}" if cursor else ""
            if (a := await self.api.call("GET", q, headers=self.user.auth)) is None:
                return
            if a.status != 200:
                self.l.violation(f"posts list answered {a.status}: {a.body[:200]!r}")
                return
            cursor = a.json()["next_cursor"]
            self.l.counts["posts pages listed"] += 1
            if cursor is None:
                return

    def _live(self, ids: list[int]) -> list[int]:
        return [i for i in ids if not self.model[i].deleted]

    async def action(self) -> None:
        act = self.rng.choice(["hide", "unhide", "delete", "restore", "license"])
        live = self._live(self.user.actions)
        deleted = [i for i in self.model if self.model[i].deleted]
        pool = {"restore": deleted, "delete": live if len(live) > 20 else []}.get(act, live)
        if not pool:
            return
        ids = self.rng.sample(pool, self.rng.randint(1, min(40, len(pool))))
        bad = self.rng.random() < 0.1
        if bad:  # one id that must make the whole batch fail, nothing changed
            # (A live post is no such id for a restore: a repeated restore is idempotent.)
            outsiders = [self.seed.stranger_post] + ([] if act == "restore" else deleted[:1])
            ids.append(self.rng.choice(outsiders))
        await self.batch(act, ids, expect_ok=not bad)

    async def batch(self, act: str, ids: list[int], *, expect_ok: bool = True) -> None:
        """A batch action, then the database read: all applied, or none."""
        licence = self.rng.choice([*self.seed.licenses, None])
        body: dict[str, Any] = {"post_ids": ids}
        change: dict[str, Any]  # the PostState fields the action sets
        if act == "license":
            path, body["license_id"], change = "/api/pmd/license", licence, {"license": licence}
        else:
            flag = "hidden" if act.endswith("hide") else "deleted"
            path, body["action"], change = "/api/pmd/action", act, {flag: act in ("hide", "delete")}
        before = {i: self.model.get(i, PostState()) for i in ids}
        want = {i: replace(s, **change) for i, s in before.items()}
        a = await self.api.call("POST", path, json=body, headers=self.user.auth)
        if a is None:  # unknown outcome: give a stopping server time to finish or drop it
            await asyncio.sleep(3)
        elif a.status >= 500:
            return  # Api.classify booked it
        elif not (a.status == 200 if expect_ok else 400 <= a.status < 500):
            expected = "200" if expect_ok else "4xx"
            self.l.violation(f"{act} answered {a.status} (expected {expected}): {a.body[:200]!r}")
            return
        rows = await self.pool.fetch(
            "SELECT id, hidden_by_user, deleted_by_user, license_id FROM posts"
            " WHERE id = ANY($1::int[])",
            ids,
        )
        now = {
            r["id"]: PostState(r["hidden_by_user"], r["deleted_by_user"], r["license_id"])
            for r in rows
        }
        mine = [i for i in ids if i in self.model]
        applied = all(now[i] == want[i] for i in mine)
        untouched = all(now[i] == before[i] for i in mine)
        if a is None and (applied or untouched):
            found = "all" if applied else "none"
            self.l.counts[f"actions: unknown outcome, found {found} applied"] += 1
        elif a is None:
            self.l.violation(f"{act} batch half-applied after a lost connection: {ids}")
        elif expect_ok and applied:
            self.l.counts["actions: 200, every id changed"] += 1
        elif expect_ok:
            self.l.violation(f"{act} answered 200 but not every id changed: {ids}")
        elif untouched:
            self.l.counts["actions: 4xx, nothing changed"] += 1
        else:
            self.l.violation(f"{act} answered {a.status} but changed posts: {ids}")
        self.model.update({i: now[i] for i in mine})

    async def create(self) -> None:
        if self.rng.random() < 0.1:  # a burst from several tabs at once, against the limit
            await asyncio.gather(*(self.create_one(doomed=False) for _ in range(3)))
        else:
            await self.create_one(doomed=self.rng.random() < 0.25)

    async def create_one(self, *, doomed: bool) -> None:
        low, high = self.rng.choices([(1, 8), (9, 64), (65, 128)], [0.4, 0.4, 0.2])[0]
        size = self.rng.randint(low, high)
        ids = self.rng.sample(self.user.downloads, min(size, len(self.user.downloads)))
        live = self._live(self.user.doomed)
        doom = self.rng.sample(live, min(3, len(live))) if doomed else []
        ids = ids + doom if len(ids) + len(doom) <= 128 else ids
        flags = ("include_comments", "include_reactions", "send_email")
        body = {"post_ids": ids, **{k: self.rng.random() < 0.5 for k in flags}}
        a = await self.api.call("POST", "/api/pmd/bdr", json=body, headers=self.user.auth)
        if a is None:
            self.l.counts["BDR requests with unknown outcome (connection lost)"] += 1
        elif a.status == 429:
            self.limited = True
            self.l.counts["BDR requests refused by the daily limit (429)"] += 1
            if "Retry-After" not in a.headers:
                self.l.violation("429 without Retry-After")
        elif a.status == 503 and "Retry-After" in a.headers:
            # classify() has booked it: allowed only while the disk was full (or a shutdown).
            self.l.counts["BDR requests answered 503 + Retry-After"] += 1
        elif a.status != 202:
            self.l.violation(f"BDR request answered {a.status}: {a.body[:200]!r}")
        else:
            item = a.json()
            self.mine[item["id"]] = item["status"]
            self.l.seen_bdrs.add(item["id"])
            self.l.counts["BDRs created (202)"] += 1
            self.l.created_at.append(time.monotonic() - self.l.t0)
            if doom and set(doom) <= set(ids):
                await self.batch("delete", doom)  # deleted while the BDR may still be pending
                self.l.counts["BDRs whose posts were deleted right after the request"] += 1
            elif self.rng.random() < 0.15:
                await self.cancel_one(item["id"])

    async def cancel(self) -> None:
        live = [i for i, s in self.mine.items() if s not in TERMINAL]
        ready = [i for i, s in self.mine.items() if s == "ready"]
        if live:
            await self.cancel_one(self.rng.choice(live))
        elif ready and self.rng.random() < 0.1:  # rarely: the ZIPs left are checked at the end
            await self.cancel_one(self.rng.choice(ready))

    async def cancel_one(self, bdr_id: str) -> None:
        a = await self.api.call("DELETE", f"/api/pmd/bdr/{bdr_id}", headers=self.user.auth)
        if a is None:
            self.l.counts["cancels with unknown outcome"] += 1
        elif a.status != 204:
            self.l.violation(f"DELETE of BDR {bdr_id} answered {a.status}")
        else:
            self.l.counts["cancels/removals (204)"] += 1
            got = await self.api.call("GET", f"/api/pmd/bdr/{bdr_id}", headers=self.user.auth)
            if got is not None and got.status == 200:
                self.mine[bdr_id] = status = got.json()["status"]
                if status not in ("cancelled", "expired", "failed"):
                    self.l.violation(f"BDR {bdr_id} is {status} after a 204 DELETE")

    async def list_bdrs(self) -> None:
        a = await self.api.call("GET", "/api/pmd/bdr", headers=self.user.auth)
        if a is not None and a.status == 200:
            for item in a.json()["items"]:
                self.mine[item["id"]] = item["status"]
                self.l.seen_bdrs.add(item["id"])
        elif a is not None:
            self.l.violation(f"BDR list answered {a.status}")

    async def readyz(self) -> None:
        await self.api.call("GET", "/readyz")

    async def ticket(self) -> None:
        a = await self.api.call("POST", "/api/pmd/bdr/sse-ticket", headers=self.user.auth)
        if a is not None and a.status not in (200, 503):
            self.l.violation(f"sse-ticket answered {a.status}")

    async def fetch_zip(self, method: str, path: str, headers: dict[str, str]) -> Answer | None:
        """The download as a browser gets it; None while the store is down."""
        a = await self.api.call(method, path, headers=headers)
        if a is not None and a.status == 503 and self.l.store_was_down():
            self.l.counts["downloads answered 503 while the object store was down"] += 1
            return None  # booked by Api.classify
        if a is not None and a.status == 302:
            self.l.counts[f"downloads redirected to a signed URL ({method})"] += 1
            plain = {k: v for k, v in headers.items() if k != "Authorization"}
            failed = "signed-URL reads the object store failed while down"
            try:
                async with self.api.http.request(method, a.headers["Location"], headers=plain) as r:
                    if r.status >= 500 and self.l.store_was_down():
                        self.l.counts[failed] += 1
                        return None
                    a = Answer(r.status, CIMultiDict(r.headers), await r.read())
            except CONNECTION_ERRORS:
                # A stopped store refuses the browser's connection itself: no server answers.
                if not self.l.store_was_down():
                    raise
                self.l.counts[failed] += 1
                return None
        if self.break_downloads and a is not None and a.body:
            mid = len(a.body) // 2
            a.body = a.body[:mid] + bytes([a.body[mid] ^ 0xFF]) + a.body[mid + 1 :]
        return a

    async def download(self) -> None:
        """A ready ZIP of this user's, downloaded whole, by Range or with HEAD, and checked."""
        await self.list_bdrs()
        if not (ready := [i for i, s in self.mine.items() if s == "ready"]):
            return
        bdr_id = self.rng.choice(ready)
        row = await self.pool.fetchrow(
            "SELECT * FROM batch_download_requests WHERE id = $1::uuid", bdr_id
        )
        assert row is not None
        path, size = f"/api/pmd/bdr/{bdr_id}/download", row["file_size_bytes"]
        kind = self.rng.choice(["whole ZIP, byte-exact", "range", "if-range", "HEAD"])
        start = self.rng.randrange(size)
        end = min(size - 1, start + self.rng.randint(0, 200_000))
        headers = dict(self.user.auth)
        if kind in ("range", "if-range"):
            headers["Range"] = f"bytes={start}-{end}"
            kind = f"Range ({kind})"
        if kind == "Range (if-range)":
            if (head := await self.fetch_zip("HEAD", path, self.user.auth)) is None:
                return
            headers["If-Range"] = head.headers.get("ETag", "")
            if head.status != 200 or not headers["If-Range"]:
                self.l.counts[f"downloads checked: {kind}"] += 1
                self.l.download_failed(f"HEAD {bdr_id} for If-Range: {head.status}, no ETag")
                return
        if (a := await self.fetch_zip("HEAD" if kind == "HEAD" else "GET", path, headers)) is None:
            return
        if kind == "HEAD":
            ok = a.status == 200 and a.headers.get("Content-Length") == str(size)
            why = f"HEAD {bdr_id}: {a.status} {a.headers.get('Content-Length')}"
        elif not kind.startswith("Range"):
            found = await asyncio.to_thread(zip_problems, row, a.body, self.seed)
            ok = a.status == 200 and not found
            why = (
                f"GET {bdr_id}: {a.status}, {len(a.body)} bytes, not the recorded ZIP: {found[:2]}"
            )
        else:
            if (want := await self._reference(row["file_path"], start, end)) is None:
                return
            ok = a.status == 206 and a.body == want
            why = f"Range {start}-{end} of {bdr_id}: {a.status}, {len(a.body)} bytes differ"
        self.l.counts[f"downloads checked: {kind}"] += 1
        if not ok:
            self.l.download_failed(why)

    async def _reference(self, file_path: str, start: int, end: int) -> bytes | None:
        key = file_path.removeprefix("bdr/")
        if self.zip_store is None:
            return await asyncio.to_thread(_slice, self.bdr_root / key, start, end)
        try:
            got = await obstore.get_range_async(self.zip_store, key, start=start, end=end + 1)
        except Exception:
            if not self.l.store_was_down():
                raise
            self.l.counts["reference reads the object store failed while down"] += 1
            return None
        return got.to_bytes()


def _slice(path: Path, start: int, end: int) -> bytes:
    with path.open("rb") as f:
        f.seek(start)
        return f.read(end - start + 1)


async def play(
    api: Api, pool: asyncpg.Pool, seed: Seed, plan: Plan, duration: float, **actor: Any
) -> None:
    ledger = api.ledger
    ledger.t0 = time.monotonic()

    async def at(when: float, fault: Callable[[], Coroutine[Any, Any, None]]) -> None:
        await asyncio.sleep(max(0.0, ledger.t0 + when - time.monotonic()))
        await fault()

    actors = [
        Actor(api, pool, seed, u, duration / (20 if i < 2 else 9), **actor)
        for i, u in enumerate(seed.users)
    ]
    runs = [*(at(*p) for p in plan), *(a.run(ledger.t0 + duration) for a in actors)]
    tasks = [asyncio.ensure_future(r) for r in runs]
    try:
        await asyncio.gather(*tasks)
    finally:
        await cancel(tasks)
    ledger.say("workload over")


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), 10)
    except TimeoutError:
        pool.terminate()

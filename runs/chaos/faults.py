"""The faults the chaos run injects, on a schedule."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import obstore

from pmd_service.core.objects import S3Access, StoreUrl, incomplete_uploads, open_store
from runs.chaos.procs import Proc, Tmpfs, open_files, window
from runs.chaos.seed import SeedUser
from runs.chaos.sse import SseClient
from runs.chaos.workload import CONNECTION_ERRORS, Injector
from support.mailbox import Mailbox
from support.pgbouncer import PgBouncer, console
from support.redis import RedisServer
from support.seaweed import Seaweed
from support.stack import listener_pids

SQL_KILL_LISTENERS = """
SELECT pid, pg_terminate_backend(pid) AS killed FROM pg_stat_activity
WHERE application_name = 'pmd-sse-listener' AND datname = current_database()
"""
STORE_READY_SECONDS = 30
# The server gives up on a frozen store after STORE_TIMEOUT_SECONDS (5 s).
FROZEN_ANSWER_SECONDS = 15.0


@dataclass
class Faults(Injector):
    workers: list[Proc]
    redis: RedisServer
    smtp: Mailbox
    tmpfs: Tmpfs | None
    victim: SeedUser
    streams: list[SseClient]
    store: Seaweed | None = None
    bucket: StoreUrl | None = None
    access: S3Access | None = None
    pooler: PgBouncer | None = None
    redis_seconds: float = 20.0
    smtp_seconds: float = 25.0
    disk_seconds: float = 15.0
    store_seconds: float = 20.0
    frozen_seconds: float = 20.0
    # Under the servers' pool wait (DB_ACQUIRE_TIMEOUT, 5 s): a held request waits, never 503s.
    pause_seconds: float = 3.0
    held: set[str] = field(default_factory=set)  # servers stopped and started by a fault
    rng: random.Random = field(default_factory=lambda: random.Random(6))
    server_turn: int = 0
    disk_bdr: str | None = None  # requested while the disk was full
    frozen_bdrs: list[str] = field(default_factory=list)  # the victim's, for the freeze's probes

    async def kill_worker(self) -> None:
        """A 128-artwork BDR of big files, then SIGKILL the worker building it (or every one)."""
        ids = self.rng.sample(self.victim.downloads, 128)
        await self.request(self.victim, ids, send_email=True, include_comments=True)
        start = time.monotonic()
        deadline = start + 40
        while time.monotonic() < deadline:
            killed, what = await self._building()
            if killed:
                pids = ", ".join(f"{w.name} (pid {w.pid})" for w in killed)
                for w in killed:
                    w.kill_all()
                self.ledger.worker_kills.append(datetime.now(UTC))
                self.say(f"SIGKILL {pids} mid-{what}")
                await asyncio.sleep(3)
                for w in killed:
                    w.start()
                self.say(f"restarted {', '.join(f'{w.name} (pid {w.pid})' for w in killed)}")
                return
            await asyncio.sleep(0.01 if self.bucket is None else 0.05)  # a listing asks the store
        what = "upload was" if self.bucket is not None else "worker was building a ZIP"
        outages = (*self.ledger.redis_down, *self.ledger.store_down)
        if any(a < deadline and b > start for a, b in outages):
            # A loaded machine's worker had not begun before an outage: no kill could land.
            self.ledger.counts["worker kills not injected: Redis or the store down first"] += 1
            return
        self.ledger.violation(f"fault not injected: no {what} under way within 40 s")

    async def _building(self) -> tuple[list[Proc], str]:
        if self.bucket is not None:
            assert self.access is not None
            try:
                uploads = await incomplete_uploads(self.bucket, self.access)
            except Exception:
                if not self.ledger.store_was_down():
                    raise
                return [], ""  # the store's own fault came first: nothing to catch meanwhile
            alive = [w for w in self.workers if w.alive()] if uploads else []
            return alive, "upload of " + ", ".join(u.key for u in uploads)
        for w in filter(Proc.alive, self.workers):
            if parts := sorted(Path(f).name for f in open_files(w.pid) if f.endswith(".part")):
                return [w], f"build of {len(parts)} ZIP(s): {', '.join(parts)}"
        return [], ""

    async def store_down(self) -> None:
        assert self.store is not None
        with window(self.ledger.store_down):
            await asyncio.to_thread(self.store.stop)
            self.say(f"object store stopped (for {self.store_seconds:.0f} s)")
            await asyncio.sleep(self.store_seconds)
            try:
                await asyncio.to_thread(self.store.start)
                answering = time.monotonic()
                await self._store_serves_reads()
            except RuntimeError as exc:  # the rest of the run needs it: say why, stop there
                self.ledger.violation(f"the object store did not start again: {exc}")
                raise
        readable = time.monotonic() - answering
        self.say(
            f"object store started again (its stored objects readable {readable:.1f} s "
            "after its S3 gateway answered)"
        )

    async def _store_serves_reads(self) -> None:
        """Until an object stored before the stop can be read (the gateway answers before)."""
        assert self.bucket is not None and self.access is not None
        store = open_store(self.bucket, self.access)
        deadline = time.monotonic() + STORE_READY_SECONDS
        while True:
            try:
                async for chunk in obstore.list(store, chunk_size=1):
                    if chunk:
                        await obstore.get_range_async(store, chunk[0]["path"], start=0, end=1)
                    break
                return
            except Exception as exc:  # obstore's errors: still starting
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"no object could be read for {STORE_READY_SECONDS} s"
                    ) from exc
                await asyncio.sleep(0.1)

    async def prepare_frozen(self) -> None:
        """Small BDRs of the victim, for the freeze's downloads and removals."""
        for _ in range(1 + len(self.api.servers)):
            if bdr := await self.request(self.victim, self.rng.sample(self.victim.downloads, 2)):
                self.frozen_bdrs.append(bdr)

    async def store_frozen(self) -> None:
        """The S3 server SIGSTOPped: downloads must answer 503 and removals 204, in time."""
        assert self.store is not None
        ready = [r["id"] for r in await self.until_ready(self.frozen_bdrs, 20)]
        if len(ready) < len(self.frozen_bdrs):
            self.ledger.violation("fault not fully injected: the BDRs for the freeze not ready")
        slowest = 0.0
        with window(self.ledger.store_down) as start:
            await asyncio.to_thread(self.store.freeze)
            self.say(f"object store frozen (SIGSTOP, for {self.frozen_seconds:.0f} s)")
            try:
                removals = [(i, "DELETE", f"/api/pmd/bdr/{b}") for i, b in enumerate(ready[1:])]
                while time.monotonic() - start < self.frozen_seconds - FROZEN_ANSWER_SECONDS / 3:
                    probes = [
                        (i, method, f"/api/pmd/bdr/{bdr_id}/download")
                        for bdr_id in ready[:1]
                        for i in range(len(self.api.servers))
                        for method in ("GET", "HEAD")
                    ] + removals
                    removals = []
                    took = await asyncio.gather(*(self._frozen_probe(*p) for p in probes))
                    slowest = max([slowest, *took])
                    await asyncio.sleep(2)
                await asyncio.sleep(max(0.0, start + self.frozen_seconds - time.monotonic()))
            finally:
                await asyncio.to_thread(self.store.thaw)
        self.ledger.counts["slowest answer while the store was frozen (ms)"] = round(slowest * 1000)
        self.say(f"object store thawed (SIGCONT); slowest answer meanwhile {slowest:.1f} s")

    async def _frozen_probe(self, server: int, method: str, path: str) -> float:
        s, began = self.api.servers[server], time.monotonic()
        try:
            a = await self.api.once(s, method, path, headers=self.victim.auth)
        except CONNECTION_ERRORS as exc:
            if s.alive() and s.name not in self.held:
                self.ledger.violation(f"frozen store: {method} {path} on {s.name}: {exc!r}")
            return 0.0
        took = time.monotonic() - began
        self.ledger.counts[f"answers while the store was frozen: {method} {a.status}"] += 1
        expected = 204 if method == "DELETE" else 503
        if a.status != expected or (expected == 503 and "Retry-After" not in a.headers):
            self.ledger.violation(
                f"frozen store: {method} {path} on {s.name} answered {a.status}"
                f" (Retry-After {a.headers.get('Retry-After')})"
            )
        if took > FROZEN_ANSWER_SECONDS:
            self.ledger.violation(
                f"frozen store: {method} {path} on {s.name} took {took:.1f} s "
                f"(more than {FROZEN_ANSWER_SECONDS:.0f} s)"
            )
        return took

    async def sigterm_server(self) -> None:
        """Each server in turn SIGTERMed with streams open, started again 2 s after its exit."""
        i = self.server_turn % len(self.api.servers)
        self.server_turn += 1
        s = self.api.servers[i]
        if not s.alive():
            self.ledger.violation(f"fault not injected: {s.name} was not running")
            return
        open_here = sum(1 for c in self.streams if c.where == i and c.connected)
        self.held.add(s.name)
        code, took = await s.sigterm(s.shutdowns, 20)
        self.ledger.counts["servers SIGTERMed"] += 1
        self.ledger.counts["server SIGTERM exits within 2 s"] += took <= 2.0
        exited = "SIGKILLed after 20 s" if code is None else f"exited {code} after {took:.2f} s"
        self.say(f"SIGTERM {s.name} with {open_here} of our SSE streams open: {exited}")
        await asyncio.sleep(2)
        s.start()
        await s.wait_healthy()
        self.held.discard(s.name)
        self.say(f"restarted {s.name} (pid {s.pid})")

    async def redis_down(self) -> None:
        with window(self.ledger.redis_down):
            self.redis.stop()
            self.say(
                f"Redis stopped (for {self.redis_seconds:.0f} s; no persistence: queued "
                "jobs are lost)"
            )
            await asyncio.sleep(self.redis_seconds)
            await asyncio.to_thread(self.redis.start)
        self.say("Redis started again (empty)")

    async def kill_listeners(self) -> None:
        rows = await self.pool.fetch(SQL_KILL_LISTENERS)
        killed = sum(1 for r in rows if r["killed"])
        self.say(
            f"pg_terminate_backend of {killed} SSE listener connection(s) (pids "
            f"{', '.join(str(r['pid']) for r in rows)})"
        )
        if killed < (alive := sum(s.alive() for s in self.api.servers)):
            self.ledger.violation(
                f"fault not fully injected: {killed} listeners for {alive} servers"
            )
        await self._listeners_back()

    async def _listeners_back(self, within: float = 30, quiet: bool = False) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            if len(await listener_pids(self.pool)) >= sum(s.alive() for s in self.api.servers):
                self.say("every server's listener is back")
                return True
        if not quiet:
            self.say(f"a listener did not come back within {within:.0f} s")
        return False

    async def pooler_paused(self) -> None:
        """PgBouncer PAUSEd, the LISTEN connections terminated meanwhile: they come back."""
        assert self.pooler is not None
        before = len(await listener_pids(self.pool))
        with window(self.ledger.pooler_paused) as start:
            try:
                await console(self.pooler, "PAUSE", within=30)
                paused = time.monotonic()
                kept = len(await listener_pids(self.pool))
                rows = await self.pool.fetch(SQL_KILL_LISTENERS)
                self.say(
                    f"PgBouncer PAUSEd ({paused - start:.1f} s until every transaction "
                    f"had ended; every server connection closed), for "
                    f"{self.pause_seconds:.0f} s; {kept} of {before} LISTEN connections "
                    f"(direct) kept, then pg_terminate_backend of {sum(r['killed'] for r in rows)}"
                )
                if kept < before:
                    self.ledger.violation(
                        f"PgBouncer's pause closed a LISTEN connection ({kept} of {before} left):"
                        " they must go direct"
                    )
                remaining = paused + self.pause_seconds - time.monotonic()
                back = await self._listeners_back(remaining, quiet=True)
                self.ledger.counts["PgBouncer pauses that listeners came back in"] += back
                await asyncio.sleep(max(0.0, paused + self.pause_seconds - time.monotonic()))
            finally:
                await console(self.pooler, "RESUME", within=10)
        self.ledger.counts["PgBouncer pauses"] += 1
        self.say("PgBouncer RESUMEd: new server connections")
        if not back:
            await self._listeners_back()

    async def smtp_down(self) -> None:
        await asyncio.to_thread(self.smtp.stop)
        self.say(f"SMTP server stopped (for {self.smtp_seconds:.0f} s)")
        await asyncio.sleep(self.smtp_seconds)
        await asyncio.to_thread(self.smtp.start)
        self.say("SMTP server started again")

    async def disk_full(self) -> None:
        if self.tmpfs is None:
            self.say("full disk SKIPPED: needs root (a tmpfs is mounted over ZIP_PATH)")
            self.ledger.counts["faults skipped (not root): full disk"] += 1
            return
        with window(self.ledger.disk_full):
            taken = await asyncio.to_thread(self.tmpfs.fill)
            self.say(
                f"BDR disk full: a ballast file took the last {taken / 2**20:.0f} MiB "
                f"(for {self.disk_seconds:.0f} s)"
            )
            body = {"post_ids": self.rng.sample(self.victim.downloads, 40), "send_email": True}
            a = await self.api.call("POST", "/api/pmd/bdr", json=body, headers=self.victim.auth)
            if a is not None and a.status == 202:
                self.disk_bdr = a.json()["id"]
                self.ledger.seen_bdrs.add(a.json()["id"])
            elif a is not None:
                self.say(
                    f"BDR requested on the full disk: {a.status}, "
                    f"Retry-After {a.headers.get('Retry-After')}"
                )
            await asyncio.sleep(self.disk_seconds)
            await asyncio.to_thread(self.tmpfs.empty)
        self.say(f"ballast removed: {shutil.disk_usage(self.tmpfs.path).free / 2**20:.0f} MiB free")

"""The cluster's workload, faults and checks, run from the client host against the balancer."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiohttp
import asyncpg

from pmd_service.core.db import create_pool
from pmd_service.core.migrate import apply_migrations, create_host_tables
from pmd_service.core.objects import open_store
from pmd_service.core.settings import Settings
from pmd_service.host.grants import grants_sql
from runs.chaos.checks import DAILY_LIMIT, Report, check_all, check_processes, conclude, settle
from runs.chaos.procs import Spans, Supervisor, during, window
from runs.chaos.seed import Seed, seed
from runs.chaos.sse import SseClient, start_streams
from runs.chaos.workload import Api, Injector, Ledger, Plan, cancel, close_pool, play
from runs.cluster.checks import SERVICE_HOSTS, service_logs
from runs.cluster.hosts import BUCKET, LINK_BUFFER, SERVICE_ROLE, Cluster
from runs.cluster.upgrade import Exports, command
from support.mailbox import Mailbox
from support.release import CURRENT
from support.seaweed import Seaweed, create_bucket
from support.seeding import Factory
from support.stack import answers, connected, wait_ready

HAPROXY_PAGE = b"<html><body><h1>50"  # the balancer's own error page, not the service's
SQL_BUILDING = "SELECT count(*) FROM batch_download_requests WHERE status = 'processing'"
# The events a client counts (chaos/sse.py: downloads' and exports', not posts').
SQL_EVENTS = """SELECT id FROM stream_events WHERE user_id = $1 AND kind IN ('bdr', 'export')
AND id > $2 ORDER BY id"""
PART_BYTES = 4 * 2**20  # an export's parts: several a user, tens for the victim
# The client's settings from the service's environment: its stores, not the hosts' folders.
SETTINGS = ("DATABASE_URL", "REDIS_URL", "BDR_STORE", "AWS_", "JWT_SECRET_KEY")


@dataclass
class Balancer:
    address: str
    name: str = "lb"
    losses: Spans = field(default_factory=list)  # every host loss: a 5xx inside one is booked
    shutdowns: Spans = field(default_factory=list)  # every SIGTERM to exit: a 503 is documented
    stopped: dict[str, tuple[float, float]] = field(default_factory=dict)  # host: last stop

    @property
    def base(self) -> str:
        return f"http://{self.address}"

    def in_shutdown(self, t: float, grace: float = 1.0) -> bool:
        """A server was stopping or lost: a download cut then is not a failure."""
        return self.lost(t) or during(self.shutdowns, t, grace)

    def lost(self, t: float, grace: float = 3.0) -> bool:
        return during(self.losses, t, grace)


class ClusterApi(Api):
    def classify(self, server: Any, name: str, status: int, body: bytes, started: float) -> None:
        lost = server.lost(started) or server.lost(time.monotonic())
        if status in (502, 503, 504) and body.startswith(HAPROXY_PAGE) and lost:
            self.ledger.counts["balancer 5xx while a host was lost"] += 1
        else:
            super().classify(server, name, status, body, started)


@dataclass
class Faults(Injector):
    cluster: Cluster
    env: dict[str, str]
    settings: Settings
    lb: Balancer
    down: set[str] = field(default_factory=set)  # hosts lost at the moment
    streams: list[SseClient] = field(default_factory=list)
    storms: list[str] = field(default_factory=list)  # each server stop's reconnects
    storm_figures: list[dict[str, Any]] = field(default_factory=list)  # the same, for --json

    async def lose_host(self, name: str, down_for: float) -> None:
        host = self.cluster.host(name)
        with window(self.lb.losses):
            self.down.add(name)
            building = await self.pool.fetchval(SQL_BUILDING)
            await asyncio.to_thread(host.kill_all)
            if name in self.cluster.workers:
                self.ledger.worker_kills.append(datetime.now(UTC))
            host.set_link("down")
            self.say(f"host {name} lost ({building} BDRs building)")
            await asyncio.sleep(down_for)
            host.set_link("up")
            await self.cluster.start(name, self.env)
        self.down.discard(name)
        self.say(f"host {name} back")

    async def lose_worker_mid_build(self, victim: Any) -> None:
        await self.request(victim, random.sample(victim.downloads, 128), send_email=True)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            for name in self.cluster.workers:
                if self.cluster.reads_vault(name):
                    await self.lose_host(name, 15)
                    return
            await asyncio.sleep(0.01)
        self.ledger.violation("fault not injected: no worker host was building within 40 s")

    async def cut(self, rather: str, peer: str, seconds: float) -> None:
        up = [n for n in self.cluster.workers if n not in self.down]
        name = rather if rather in up or not up else up[0]
        host, other = self.cluster.host(name), self.cluster.host(peer)
        host.cut(other)
        self.say(f"host {name} cut off from {peer} for {seconds:.0f} s")
        await asyncio.sleep(seconds)
        host.cut(other, off=False)
        self.say(f"host {name} reaches {peer} again")

    async def upgrade(self) -> None:
        """Grants, migrations and the deploy; a hide the old release took is undone on the new."""
        async with self.pool.acquire() as conn:
            user, ids = await Factory(conn, self.settings).owner_and_bulk(2)
        body = {"action": "hide", "post_ids": ids}
        hid = await self.api.call("POST", "/api/pmd/action", json=body, headers=user.auth)
        undo = hid.json().get("undo") if hid is not None and hid.status == 200 else None
        if not undo:
            said = f"{hid and hid.status}: {hid and hid.body[:200]!r}"
            self.ledger.violation(f"a hide before the upgrade answered {said}")
        await self.pool.execute(grants_sql(SERVICE_ROLE))
        began = time.monotonic()
        applied = (await command(CURRENT, ["migrate"], self.env)).strip()
        old = self.cluster.previous and self.cluster.previous.name
        self.say(f"upgrade: {applied} in {time.monotonic() - began:.1f} s, with {old} serving")
        await asyncio.sleep(10)
        await self.roll()
        if not undo:
            return
        a = await self.api.call("POST", str(undo), headers=user.auth)
        if a is None or a.status != 200 or a.json()["affected_count"] != 2:
            said = f"{a and a.status} on the new one: {a and a.body[:200]!r}"
            self.ledger.violation(f"the undo of a hide the previous release took answered {said}")
        else:
            self.ledger.counts["actions of the previous release undone on the new one"] += 1
            self.say("upgrade: a hide the previous release took, undone on the new one")

    async def roll(self) -> None:
        """Every server, then every worker redeployed (an upgrade: in pairs, one SIGKILLed)."""
        servers, workers = self.cluster.servers, self.cluster.workers
        pairs = [h for pair in zip(servers, workers, strict=True) for h in pair]
        for name in pairs if self.cluster.previous else [*servers, *workers]:
            storm = asyncio.create_task(self.storm(name))
            if self.cluster.previous and name == workers[0]:
                await self.kill_mid_job(name)
            else:
                await self.stop(name)
            self.cluster.releases.pop(name, None)
            await self.cluster.start(name, self.env)
            if name in self.cluster.servers:
                await self.cluster.until_up_at_balancer(name)
                self.say(f"deploy: {name} up again at the balancer")
            else:
                self.say(f"deploy: {name} started")
            await storm

    async def stop(self, name: str) -> None:
        """Host `name` stopped with SIGTERM, as a deploy does, within 60 s."""
        code, took = await self.cluster.host(name).sigterm(self.lb.shutdowns, 60)
        self.lb.stopped[name] = ((end := time.monotonic()) - took, end)
        if code is None:
            self.ledger.violation(f"{name} did not exit within 60 s of SIGTERM")
        elif code not in (0, -signal.SIGTERM):
            self.ledger.violation(f"{name} exited with {code} after SIGTERM")
        self.say(f"deploy: {name} stopped in {took:.1f} s")

    async def kill_mid_job(self, name: str) -> None:
        """Worker `name` SIGKILLed mid-build, as a deploy out of grace: the sweep requeues it."""
        deadline = time.monotonic() + 60
        while not self.cluster.reads_vault(name):
            if time.monotonic() > deadline:
                self.ledger.violation(f"fault not injected: {name} built nothing within 60 s")
                await self.stop(name)
                return
            await asyncio.sleep(0.01)
        await asyncio.to_thread(self.cluster.host(name).kill_all)
        self.ledger.worker_kills.append(datetime.now(UTC))
        self.say(f"deploy: {name} SIGKILLed while building (its grace ran out)")

    async def storm(self, name: str) -> None:
        """Server `name` about to stop: how long until every stream is held again."""
        if name not in self.cluster.servers:
            return
        before, began = [c.connects for c in self.streams], time.monotonic()
        held_before = sum(c.connected for c in self.streams)
        while time.monotonic() < began + 120 and not (  # noqa: ASYNC110 - a state, unannounced
            any(c.connects > n for c, n in zip(self.streams, before, strict=True))
            and all(c.connected for c in self.streams)
        ):
            await asyncio.sleep(0.05)
        moved = sum(c.connects > n for c, n in zip(self.streams, before, strict=True))
        held, took = sum(c.connected for c in self.streams), time.monotonic() - began
        self.storms.append(
            text := f"{name} stopped: {moved} streams reconnected; {held} of "
            f"{len(self.streams)} held {took:.1f} s after its SIGTERM"
        )
        self.say(f"deploy: {text}")
        figures = dict(open=held_before, reconnected=moved, held=held, seconds=round(took, 1))
        self.storm_figures.append({"host": name, **figures})
        if held < len(self.streams):
            self.ledger.violation(f"streams not held again 120 s after {name} stopped: {text}")

    async def kill_unannounced(self) -> None:
        name = self.cluster.workers[0]
        pid = self.cluster.host(name).procs[-1].pid
        os.kill(pid, signal.SIGKILL)
        self.say(f"--break-crash-check: SIGKILL to the process of {name} (pid {pid}), unannounced")

    async def reach_workload(self) -> None:
        self.cluster.steps.reached("workload")  # --fail-at workload


def schedule(f: Faults, args: argparse.Namespace, data: Seed, exports: Exports) -> Plan:
    d, victim = args.duration, data.victim
    plan: Plan = [(0.3 * d, f.kill_unannounced)] if args.break_crash_check else []
    if f.cluster.steps.fail_at == "workload":
        plan.append((0.1 * d, f.reach_workload))
    if args.rolling:  # every user's exports, one after the other, until the workload ends
        plan += [(0.0, partial(exports.run, u, PART_BYTES, d)) for u in [*data.users, victim]]
    if args.no_faults:
        return plan
    if args.rolling:
        return [*plan, (0.15 * d, f.upgrade if f.cluster.previous else f.roll)]
    return [
        *plan,
        (0.05 * d, lambda: f.lose_worker_mid_build(victim)),
        (0.20 * d, lambda: f.cut("wrk2", "redis", 30)),
        (0.40 * d, lambda: f.lose_host("srv1", 15)),
        (0.55 * d, lambda: f.cut("wrk2", "db", 30)),
    ]


async def slow_download(api: Api, user: Any, bdr_id: str, sha256: str) -> dict[str, Any]:
    """A download read at about 1 MB/s, resumed with Range and If-Range whenever it is cut."""
    got, etag, started = bytearray(), "", time.monotonic()
    attempts: list[list[Any]] = []  # [host, began, ended]
    out: dict[str, Any] = {"resumes": 0, "attempts": attempts}
    url = f"{api.servers[0].base}/api/pmd/bdr/{bdr_id}/download"
    while True:
        resume = {"Range": f"bytes={len(got)}-", "If-Range": etag} if got else {}
        try:
            async with api.http.get(url, headers=dict(user.auth) | resume) as resp:
                attempts.append([resp.headers.get("X-Served-By"), time.monotonic(), None])
                if resp.status not in (200, 206) or (got and resp.status != 206):
                    return out | {"error": f"status {resp.status} at byte {len(got)}"}
                etag = resp.headers.get("ETag", etag)
                async for chunk in resp.content.iter_chunked(65536):
                    got += chunk
                    await asyncio.sleep(0.05)
            attempts[-1][2] = time.monotonic()
            break
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            if attempts:
                attempts[-1][2] = time.monotonic()
            out["resumes"] += 1
            await asyncio.sleep(0.5)
    exact = hashlib.sha256(got).hexdigest() == sha256
    return out | {
        "bytes": len(got),
        "seconds": round(time.monotonic() - started, 1),
        "exact": exact,
    }


async def prepare(cluster: Cluster, env: dict[str, str], settings: Settings, users: int) -> Seed:
    """The database as beside the host: host tables, the service's role, its migrations."""
    old = cluster.previous
    async with connected(cluster.admin_url, "pmd-cluster") as conn:
        await conn.execute("ALTER DATABASE pmd SET search_path = pmd, public")
        await create_host_tables(conn)
        grants = ["grants", "--role", SERVICE_ROLE]
        sql = grants_sql(SERVICE_ROLE) if old is None else await command(old, grants, env)
        await conn.execute(sql)
        factory, rng = Factory(conn, settings), random.Random(20261123)
        data = await seed(factory, users=users, posts_per_user=160, victim_posts=130, rng=rng)
    if old is not None:
        print(f"{old.name}: {(await command(old, ['migrate'], env)).strip()}", flush=True)
    else:
        async with connected(env["DATABASE_DIRECT_URL"], "pmd-cluster") as conn:
            await apply_migrations(conn)
    await create_bucket(Seaweed(env["AWS_ENDPOINT_URL"], cluster.run_dir), BUCKET)
    return data


async def run(cluster: Cluster, args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as undo:
        return await _run(cluster, args, undo)


async def _run(cluster: Cluster, args: argparse.Namespace, undo: contextlib.AsyncExitStack) -> int:
    steps, duration, users = cluster.steps, args.duration, args.users
    full = 4000 if cluster.previous else 1000
    streams = (200 if args.ci else full) if args.rolling else 2 * (users + 1)
    per_user = -(-streams // (users + 1))
    client = cluster.host("client").address
    smtp = Mailbox(client, 1025)
    smtp.start()
    undo.callback(smtp.stop)
    steps.reached("smtp")
    # SMTP_TIMEOUT 5: an email lease of 30 s, so one a killed worker took is sent in time.
    env = cluster.service_env(
        SMTP_HOST=client,
        SMTP_PORT="1025",
        BASE_URL="http://pmd.cluster",
        BDR_DOWNLOAD_MODE="proxy",
        BDR_DAILY_LIMIT=str(DAILY_LIMIT),
        BDR_RETRY_BASE_SECONDS="2",
        BDR_STALE_SECONDS="15",
        BDR_PENDING_GRACE_SECONDS="5",
        SSE_MAX_PER_USER=str(max(10, per_user)),
        SMTP_TIMEOUT="5",
        EXPORT_COOLDOWN_SECONDS="0",
        EXPORT_MIN_PART_BYTES=str(PART_BYTES),
    )
    own = {k: v for k, v in env.items() if k.startswith(SETTINGS)}
    settings = Settings.from_env(own | {"VAULT_PATH": str(cluster.run_dir / "vault")})
    data = await prepare(cluster, env, settings, users)
    steps.reached("database")
    tasks: list[asyncio.Task[Any]] = []
    undo.push_async_callback(cancel, tasks)
    for group in ("servers", "workers"):
        for name in getattr(cluster, group):
            await cluster.start(name, env)
        steps.reached(group)
    say = partial(print, " ", flush=True)  # two spaces before each line
    supervisor = Supervisor(cluster.net.hosts, partial(cluster.start, env=env), SERVICE_HOSTS, say)
    tasks.append(asyncio.create_task(supervisor.watch()))
    await asyncio.to_thread(cluster.start_lb)
    steps.reached("balancer")
    assert settings.zip_bucket is not None
    zip_store = open_store(settings.zip_bucket, settings.s3_access)
    pool = await create_pool(cluster.admin_url, "pmd-cluster", max_size=8)
    undo.push_async_callback(close_pool, pool)
    lb = Balancer(cluster.host("lb").address)
    connector = aiohttp.TCPConnector(limit=0)
    http = await undo.enter_async_context(aiohttp.ClientSession(connector=connector))
    undo.push_async_callback(cancel, tasks)  # again: before the session and pool are closed
    ledger = Ledger(t0=time.monotonic())
    api = ClusterApi(http, [lb], ledger)  # type: ignore[list-item]
    answering = partial(answers, f"{lb.base}/readyz")
    await asyncio.to_thread(wait_ready, None, answering, "the balancer", within=60)
    clients = [
        SseClient(api, u, f"sse-{u.handle}-{n}", 0, n % 2 == 1)
        for u in [*data.users, data.victim]
        for n in range(per_user)
    ]
    tasks += await start_streams(clients, 60)
    print(f"{sum(c.connected for c in clients)} streams open", flush=True)
    steps.reached("streams")
    since = int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM stream_events"))
    faults = Faults(ledger, api, pool, cluster, env, settings, lb, streams=clients)
    exports = Exports(api, pool)
    if args.rolling:  # a ready ZIP of 128 big artworks, downloaded throughout the deploy
        big = await faults.request(data.victim, random.sample(data.victim.downloads, 128))
        if big is None or not (ready := await faults.until_ready([big], 120)):
            raise RuntimeError("the big ZIP for the download in flight was not ready within 120 s")
        sha = str(ready[0]["file_sha256"])
        in_flight = asyncio.create_task(slow_download(api, data.victim, big, sha))
        tasks.append(in_flight)
        print(f"a download of {big} in flight, read at about 1 MB/s", flush=True)
    print(
        f"workload: {users} actors for {duration:.0f} s through the balancer, "
        f"{len(clients)} SSE clients; faults:",
        flush=True,
    )
    plan = schedule(faults, args, data, exports)
    await play(
        api, pool, data, plan, duration, bdr_root=cluster.run_dir / "bdr", zip_store=zip_store
    )
    await exports.settle(150)
    report = await check_all(
        api,
        pool,
        data,
        clients,
        settings,
        zip_store,
        smtp,
        settled=await settle(pool, ledger, 150),
        duration=duration,
        upgraded=cluster.previous is not None,
    )
    if args.rolling:
        await exports.check(report, smtp.received(), zip_store)
        await check_streams(report, pool, clients, since)
        download = await asyncio.wait_for(in_flight, 300)
        check_download(report, download, lb)
        report.lines += [f"  reconnect storm: {text}" for text in faults.storms]
    logged = service_logs(cluster.logs, cluster.net.hosts)
    check_processes(report, cluster.net.hosts.values(), logged)
    served = {
        r["svname"]: int(r.get("stot") or 0)
        for r in await asyncio.to_thread(cluster.stat)
        if r.get("pxname") == "servers" and r["svname"].startswith("srv")
    }
    report.info(f"requests each server host answered (HAProxy): {served}")
    code = conclude(report, ledger, "cluster")
    if args.json is None:
        return code
    figures = {
        "release": cluster.previous.name if cluster.previous else None,
        "users": users,
        "duration_s": duration,
        "streams": len(clients),
        "storms": faults.storm_figures,
        "checks": report.counted,
        "answers": sum(ledger.statuses.values()),
        "5xx": sum(n for status, n in ledger.statuses.items() if status >= 500),
        "download": download if args.rolling else None,
        "violations": len(report.violations),
        "first_violations": report.violations[:10],
    }
    args.json.write_text(json.dumps(figures, indent=1))
    return 0


async def check_streams(
    report: Report, pool: asyncpg.Pool, clients: list[SseClient], since: int
) -> None:
    problems = []
    for c in clients:
        expected = [r["id"] for r in await pool.fetch(SQL_EVENTS, c.user.id, since)]
        got = [i for i in c.ids if i > since]
        missing, twice = sorted(set(expected) - set(got))[:5], len(got) - len(set(got))
        found = f"{len(got)} of {len(expected)} events (missing e.g. {missing}, {twice} twice)"
        problems.append([] if got == expected else [f"{c.name}: {found}"])
    report.each(
        "streams that received every event of their user since the start, in order, once", problems
    )
    if resets := sum(c.resets for c in clients):
        report.violations.append(f"{resets} streams were reset (events lost to them)")


def check_download(report: Report, download: dict[str, Any], lb: Balancer) -> None:
    attempts = download.pop("attempts", [])
    report.info(f"the download in flight: {download}, served by {[a[0] for a in attempts]}")
    if not download.get("exact"):
        report.violations.append(f"the download in flight: {download}")
    # Cut where its host stopped, but for what the path's sockets hold at the most (the server's
    # send buffer, the balancer's two, the client's receive buffer), read at its pace.
    margin = 4 * LINK_BUFFER / (65536 / 0.05) + 7.0  # slow_download's pace
    for host, began, ended in attempts:
        stop = lb.stopped.get(host or "")
        if stop is not None and began < stop[0] and ended is not None and ended > stop[1] + margin:
            report.violations.append(f"the download in flight on {host} outlived that host's stop")

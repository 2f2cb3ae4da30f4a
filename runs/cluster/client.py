"""The cluster's workload, faults and checks, run from the client host (see runs/cluster/run.py).

The chaos run's actors, SSE clients and checks pointed at the balancer, one "server" for them.
Its own: the faults, on whole hosts and links; the balancer's 502/503/504 while a host it had
chosen is lost, counted (a write among them is an unknown outcome, read back from the
database); every event once per stream in a rolling deploy; and runs/cluster/checks.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
from sqids.constants import DEFAULT_ALPHABET

from pmd_service.core.db import connect, create_pool
from pmd_service.core.migrate import apply_migrations, create_host_tables
from pmd_service.core.objects import open_store
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings
from pmd_service.host.grants import grants_sql
from runs.chaos.checks import Report, check_all, conclude, settle
from runs.chaos.procs import Spans, during, until_ok, window
from runs.chaos.seed import Seed, seed
from runs.chaos.sse import SseClient, start_streams
from runs.chaos.workload import Api, Injector, Ledger, Plan, cancel, close_pool, play
from runs.cluster.checks import Supervisor, check_processes, service_logs
from runs.cluster.hosts import BUCKET, SERVICE_ROLE, Cluster
from support.mailbox import Mailbox
from support.seaweed import Seaweed, create_bucket

DAILY_LIMIT = 10
HAPROXY_PAGE = b"<html><body><h1>50"  # the balancer's own error page, not the service's


@dataclass(frozen=True)
class Options:
    ci: bool = False
    rolling: bool = False
    users: int = 8
    duration: float = 180.0
    faults: bool = True
    break_crash_check: bool = False  # a worker SIGKILLed unannounced: the run must fail


@dataclass
class Balancer:
    """What the chaos clients take for a server: here, the balancer in front of both."""

    address: str
    name: str = "lb"
    # (start, end) of every host loss: the balancer's 5xx inside one lost a request in flight.
    losses: Spans = field(default_factory=list)
    # (SIGTERM, exit) of every graceful stop: the service's own 503 inside one is documented.
    shutdowns: Spans = field(default_factory=list)
    stopped: dict[str, tuple[float, float]] = field(default_factory=dict)  # host: last stop

    @property
    def base(self) -> str:
        return f"http://{self.address}"

    def in_shutdown(self, t: float, grace: float = 1.0) -> bool:
        """A server was stopping (a deploy) or lost: a download cut then is not a failure."""
        return self.lost(t) or during(self.shutdowns, t, grace)

    def lost(self, t: float, grace: float = 3.0) -> bool:
        return during(self.losses, t, grace)

    def alive(self) -> bool:
        return True


class ClusterApi(Api):
    def classify(self, server: Any, name: str, status: int, body: bytes, started: float) -> None:
        if (
            status in (502, 503, 504)
            and body.startswith(HAPROXY_PAGE)
            and (server.lost(started) or server.lost(time.monotonic()))
        ):
            self.ledger.counts["balancer 5xx while a host was lost"] += 1
            return
        super().classify(server, name, status, body, started)


@dataclass
class Faults(Injector):
    cluster: Cluster
    env: dict[str, str]
    lb: Balancer
    down: set[str] = field(default_factory=set)  # hosts lost at the moment

    async def lose_host(self, name: str, down_for: float) -> None:
        """A power cut: every process killed, the link down; back `down_for` seconds later."""
        host = self.cluster.host(name)
        with window(self.lb.losses):
            self.down.add(name)
            building = await self.pool.fetchval(
                "SELECT count(*) FROM batch_download_requests WHERE status = 'processing'"
            )
            await asyncio.to_thread(host.kill_all)
            host.link_down()
            self.say(f"host {name} lost ({building} BDRs building)")
            await asyncio.sleep(down_for)
            host.link_up()
            await self.cluster.start(name, self.env)
        self.down.discard(name)
        self.say(f"host {name} back")

    async def lose_worker_mid_build(self, victim: Any) -> None:
        """A BDR of 128 big artworks, then the loss of whichever worker host reads the vault for
        it (its process holds artwork files open: it is building)."""
        await self.request(victim, random.sample(victim.downloads, 128), send_email=True)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            for name in self.cluster.workers:
                if self.cluster.reads_vault(name):
                    await self.lose_host(name, 15)
                    return
            await asyncio.sleep(0.01)
        self.ledger.violation("fault not injected: no worker host was building within 40 s")

    def worker_up(self, rather: str) -> str:
        """`rather`, unless that worker host is lost at the moment: then one that is up. A cut
        is a fault of a running host; one that comes back while still cut off only waits
        (STARTUP_WAIT_SECONDS) and exits, as it should, for its supervisor to start it again."""
        up = [n for n in self.cluster.workers if n not in self.down]
        return rather if rather in up or not up else up[0]

    async def cut(self, name: str, peer: str, seconds: float) -> None:
        host, other = self.cluster.host(name), self.cluster.host(peer)
        host.cut_from(other)
        self.say(f"host {name} cut off from {peer} for {seconds:.0f} s")
        await asyncio.sleep(seconds)
        host.reconnect_to(other)
        self.say(f"host {name} reaches {peer} again")

    async def stop_gracefully(self, name: str) -> float:
        """SIGTERM to the host's service process, as a deploy does; seconds until it exited."""
        host = self.cluster.host(name)
        proc = host.procs[-1]
        with window(self.lb.shutdowns) as start:
            host.expect_exit(proc)
            proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                self.ledger.violation(f"{name} did not exit within 60 s of SIGTERM")
                await asyncio.to_thread(host.kill_all)
                code = -9
        end = time.monotonic()
        self.lb.stopped[name] = (start, end)
        host.reap()
        if code not in (0, -signal.SIGTERM):
            self.ledger.violation(f"{name} exited with {code} after SIGTERM")
        return end - start

    async def roll(self) -> None:
        """A rolling deploy: every server host, then every worker host, one at a time, each
        stopped with SIGTERM and started again; the next waits until the balancer sees the
        last one up."""
        for name in [*self.cluster.servers, *self.cluster.workers]:
            took = await self.stop_gracefully(name)
            self.say(f"deploy: {name} stopped in {took:.1f} s")
            await self.cluster.start(name, self.env)
            if name in self.cluster.servers:
                await self.cluster.until_up_at_balancer(name)
                self.say(f"deploy: {name} up again at the balancer")
            else:
                self.say(f"deploy: {name} started")

    async def kill_unannounced(self) -> None:
        """--break-crash-check: a worker host's process SIGKILLed as no planned fault does (the
        run is not told): the process check must find it."""
        name = self.cluster.workers[0]
        proc = self.cluster.host(name).procs[-1]
        os.kill(proc.pid, signal.SIGKILL)
        self.say(f"--break-crash-check: SIGKILL to the process of {name} (pid {proc.pid}), "
                 "unannounced")  # fmt: skip

    async def reach_workload(self) -> None:
        self.cluster.steps.reached("workload")  # --fail-at workload


def schedule(f: Faults, options: Options, victim: Any) -> Plan:
    duration = options.duration
    plan: Plan = []
    if options.break_crash_check:
        plan.append((0.3 * duration, f.kill_unannounced))
    if f.cluster.steps.fail_at == "workload":
        plan.append((0.1 * duration, f.reach_workload))
    if not options.faults:
        return plan
    if options.rolling:
        return [*plan, (0.15 * duration, f.roll)]
    return [
        *plan,
        (0.05 * duration, lambda: f.lose_worker_mid_build(victim)),
        (0.20 * duration, lambda: f.cut(f.worker_up("wrk2"), "redis", 30)),
        (0.40 * duration, lambda: f.lose_host("srv1", 15)),
        (0.55 * duration, lambda: f.cut(f.worker_up("wrk2"), "db", 30)),
    ]


SQL_EVENTS = "SELECT id FROM bdr_events WHERE user_id = $1 AND id > $2 ORDER BY id"


async def check_every_event(
    report: Report, pool: asyncpg.Pool, clients: list[SseClient], since: int
) -> None:
    problems = []
    for c in clients:
        expected = [r["id"] for r in await pool.fetch(SQL_EVENTS, c.user.id, since)]
        got = [i for i in c.ids if i > since]
        missing = sorted(set(expected) - set(got))[:5]
        problems.append([] if got == expected else [
            f"{c.name}: {len(got)} of {len(expected)} events (missing e.g. {missing}, "
            f"{len(got) - len(set(got))} twice)"])  # fmt: skip
    report.each("streams that received every event of their user since the start, in order, "
                "once", problems)  # fmt: skip


async def slow_download(api: Api, user: Any, bdr_id: str, sha256: str, out: dict[str, Any]) -> None:
    """A download read at about 1 MB/s, resumed with Range and If-Range whenever its
    connection is cut (a server stopping), until the whole ZIP is in and its SHA-256 checks."""
    got = bytearray()
    etag: str | None = None
    out["resumes"] = 0
    out["attempts"] = attempts = []
    started = time.monotonic()
    while True:
        headers = dict(user.auth)
        if got:
            headers |= {"Range": f"bytes={len(got)}-", "If-Range": etag or ""}
        url = f"{api.servers[0].base}/api/pmd/bdr/{bdr_id}/download"
        try:
            async with api.http.get(url, headers=headers) as resp:
                attempts.append([resp.headers.get("X-Served-By"), time.monotonic(), None])
                if resp.status not in (200, 206) or (got and resp.status != 206):
                    out["error"] = f"status {resp.status} at byte {len(got)}"
                    return
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
    out["bytes"] = len(got)
    out["seconds"] = round(time.monotonic() - started, 1)
    out["exact"] = hashlib.sha256(got).hexdigest() == sha256


async def prepare(cluster: Cluster, env: dict[str, str], users: int) -> Seed:
    """The database as beside the host: host tables (stand-ins) made by the admin, the
    service's least-privilege role from `grants`, its migrations applied as that role."""
    conn = await connect(cluster.admin_url, "pmd-cluster")
    try:
        # The run's own connections name the service's tables unqualified, as the service does.
        await conn.execute("ALTER DATABASE pmd SET search_path = pmd, public")
        await create_host_tables(conn)
        await conn.execute(grants_sql(SERVICE_ROLE))
        data = await seed(conn, cluster.run_dir / "vault", cluster.jwt_secret,
                          PublicIds(DEFAULT_ALPHABET), users=users, posts_per_user=160,
                          victim_posts=130, rng=random.Random(20261123))  # fmt: skip
    finally:
        await conn.close()
    conn = await connect(env["DATABASE_DIRECT_URL"], "pmd-cluster")
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    await create_bucket(Seaweed(env["AWS_ENDPOINT_URL"], cluster.run_dir), BUCKET)
    return data


async def big_ready_zip(faults: Faults, victim: Any) -> tuple[str, str]:
    """A ready ZIP of 128 big artworks (the download a deploy must not break): id, SHA-256."""
    bdr_id = await faults.request(victim, random.sample(victim.downloads, 128))
    if bdr_id is None or not (ready := await faults.until_ready([bdr_id], 120)):
        raise RuntimeError("the big ZIP for the download in flight was not ready within 120 s")
    return bdr_id, str(ready[0]["file_sha256"])


async def run(cluster: Cluster, options: Options) -> int:
    """The workload, faults and checks on a cluster that is `up`; what it starts here (SMTP
    server, service processes, balancer, pool, tasks) is registered on a stack of undos as it
    is made, the service processes with their hosts, and undone however the run ends."""
    async with contextlib.AsyncExitStack() as undo:
        return await _run(cluster, options, undo)


async def _run(cluster: Cluster, options: Options, undo: contextlib.AsyncExitStack) -> int:
    steps = cluster.steps
    duration, users, rolling = options.duration, options.users, options.rolling
    # A rolling deploy under 1,000 open streams (200 in the short run), spread over the users.
    streams = (200 if options.ci else 1000) if rolling else 2 * (users + 1)
    per_user = -(-streams // (users + 1))
    client = cluster.host("client").address
    smtp = Mailbox(client, 1025)
    smtp.start()
    undo.callback(smtp.stop)
    steps.reached("smtp")
    env = cluster.service_env(
        SMTP_HOST=client, SMTP_PORT="1025", BASE_URL="http://pmd.cluster",
        BDR_DOWNLOAD_MODE="proxy", BDR_DAILY_LIMIT=str(DAILY_LIMIT),
        BDR_RETRY_BASE_SECONDS="2", BDR_STALE_SECONDS="15", BDR_PENDING_GRACE_SECONDS="5",
        SSE_MAX_PER_USER=str(max(10, per_user)),
    )  # fmt: skip
    data = await prepare(cluster, env, users)
    steps.reached("database")
    tasks: list[asyncio.Task[None]] = []
    undo.push_async_callback(cancel, tasks)
    # A service host's supervisor starts its process again when it has ended.
    supervisor = Supervisor(cluster.net.hosts, lambda name: cluster.start(name, env),
                            say=lambda t: print(f"  {t}", flush=True))  # fmt: skip
    for group in ("servers", "workers"):
        for name in getattr(cluster, group):
            await cluster.start(name, env)
        steps.reached(group)
    tasks.append(asyncio.create_task(supervisor.watch()))
    await asyncio.to_thread(cluster.start_lb)
    steps.reached("balancer")
    settings = Settings.from_env({k: v for k, v in env.items() if k in _FIELDS}
                                 | {"JWT_SECRET_KEY": cluster.jwt_secret})  # fmt: skip
    assert settings.bdr_bucket is not None
    zip_store = open_store(settings.bdr_bucket, settings.s3_access)
    pool = await create_pool(cluster.admin_url, "pmd-cluster", max_size=8)
    undo.push_async_callback(close_pool, pool)
    lb = Balancer(cluster.host("lb").address)
    http = await undo.enter_async_context(
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    )
    # Again, so that the tasks stop before the session and the pool they use are closed.
    undo.push_async_callback(cancel, tasks)
    ledger = Ledger(t0=time.monotonic())
    api = ClusterApi(http, [lb], ledger)  # type: ignore[list-item]
    await until_ready(http, lb)
    clients = [SseClient(api, u, f"sse-{u.handle}-{n}", 0, n % 2 == 1)
               for u in [*data.users, data.victim] for n in range(per_user)]  # fmt: skip
    tasks += await start_streams(clients, 60)
    print(f"{sum(c.connected for c in clients)} streams open", flush=True)
    steps.reached("streams")
    since = int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM bdr_events"))
    faults = Faults(ledger, api, pool, cluster, env, lb)
    download: dict[str, Any] = {}
    in_flight: asyncio.Task[None] | None = None
    if rolling:
        big, sha = await big_ready_zip(faults, data.victim)
        in_flight = asyncio.create_task(slow_download(api, data.victim, big, sha, download))
        tasks.append(in_flight)
        print(f"a download of {big} in flight, read at about 1 MB/s", flush=True)
    print(f"workload: {users} actors for {duration:.0f} s through the balancer, "
          f"{len(clients)} SSE clients; faults:", flush=True)  # fmt: skip
    await play(api, pool, data, schedule(faults, options, data.victim), duration,
               bdr_root=cluster.run_dir / "bdr", zip_store=zip_store)  # fmt: skip
    report = await check_all(api, pool, data, clients, settings, zip_store, smtp,
                             settled=await settle(pool, ledger, 150), limit=DAILY_LIMIT,
                             duration=duration)  # fmt: skip
    if rolling:
        assert in_flight is not None
        await check_every_event(report, pool, clients, since)
        resets = sum(c.resets for c in clients)
        if resets:
            report.violations.append(f"{resets} streams were reset (events lost to them)")
        await asyncio.wait_for(in_flight, 300)
        attempts = download.pop("attempts", [])
        report.info(f"the download in flight: {download}, served by "
                    f"{[a[0] for a in attempts]}")  # fmt: skip
        if not download.get("exact"):
            report.violations.append(f"the download in flight: {download}")
        for host, began, ended in attempts:
            stop = lb.stopped.get(host or "")
            # Its host stopped while it was under way: it must have been cut there
            # (and resumed on the other), not carried on by a process that exited.
            if stop is not None and began < stop[0] and ended is not None and ended > stop[1] + 5:
                report.violations.append(
                    f"the download in flight on {host} outlived that host's stop"
                )
    check_processes(report, supervisor, service_logs(cluster.logs, cluster.net.hosts))
    served = {r["svname"]: int(r.get("stot") or 0) for r in await asyncio.to_thread(cluster.stat)
              if r.get("pxname") == "servers" and r["svname"].startswith("srv")}  # fmt: skip
    report.info(f"requests each server host answered (HAProxy): {served}")
    return conclude(report, ledger, "cluster")


_FIELDS = {"DATABASE_URL", "REDIS_URL", "BDR_STORE", "AWS_ENDPOINT_URL", "AWS_REGION",
           "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # fmt: skip


async def until_ready(http: aiohttp.ClientSession, lb: Balancer) -> None:
    """Until the balancer answers /readyz 200 (bench/capacity.py waits so too; `http` is not
    needed: the wait has a session of its own)."""
    await until_ok(f"{lb.base}/readyz")

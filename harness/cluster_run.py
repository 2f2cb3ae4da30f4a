"""The cluster's workload, faults and checks, run from the client host (see harness/cluster.py).

The chaos run's actors, SSE clients and checks (harness/chaos_*.py), pointed at the balancer
instead of at each server: one "server" for them, the balancer's address. What differs is the
faults, which act on whole hosts and links, and one more kind of answer a client may see: the
balancer's own 502/503/504 while a server host it had chosen is being lost (a power cut takes
requests in flight with it; those are counted, and a write among them is an unknown outcome the
checks then read back from the database, as after a dropped connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from harness import chaos_checks as checks
from harness.chaos import SQL_UNSETTLED, converge, wait_streams
from harness.chaos_seed import Seed, seed
from harness.chaos_sse import SseClient
from harness.chaos_stack import SmtpServer
from harness.chaos_workload import Actor, Api, Ledger
from harness.cluster import BUCKET, Cluster
from harness.seaweed import Seaweed, create_bucket
from pmd_service.core.db import connect, create_pool
from pmd_service.core.migrate import apply_migrations
from pmd_service.core.objects import open_store
from pmd_service.core.public_ids import PublicIds
from pmd_service.core.settings import Settings

DAILY_LIMIT = 10
HAPROXY_PAGE = b"<html><body><h1>50"  # the balancer's own error page, not the service's


@dataclass
class Balancer:
    """What the chaos clients take for a server: here, the balancer in front of both."""

    address: str
    name: str = "lb"
    # (start, end) of every host loss: the balancer's 5xx inside one lost a request in flight.
    losses: list[tuple[float, float]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{self.address}"

    def in_shutdown(self, t: float, grace: float = 3.0) -> bool:
        return any(a - grace <= t <= b + grace for a, b in self.losses)

    def alive(self) -> bool:
        return True


class ClusterApi(Api):
    def classify(self, server: Any, name: str, status: int, body: bytes, started: float) -> None:
        if status in (502, 503, 504) and body.startswith(HAPROXY_PAGE) and (
            server.in_shutdown(started) or server.in_shutdown(time.monotonic())
        ):
            self.ledger.counts["balancer 5xx while a host was lost"] += 1
            return
        super().classify(server, name, status, body, started)


@dataclass
class Faults:
    cluster: Cluster
    env: dict[str, str]
    ledger: Ledger
    lb: Balancer
    pool: asyncpg.Pool
    api: Api
    log: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        line = f"  [{self.ledger.at()}] {text}"
        self.log.append(line)
        print(line, flush=True)

    async def building(self) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM batch_download_requests WHERE status = 'processing'"
            )
        )

    async def lose_host(self, name: str, down_for: float) -> None:
        """A power cut: every process killed, the link down; back `down_for` seconds later."""
        host = self.cluster.host(name)
        start = time.monotonic()
        self.lb.losses.append((start, start + 3600))
        building = await self.building()
        await asyncio.to_thread(host.kill_all)
        host.link_down()
        self.say(f"host {name} lost ({building} BDRs building)")
        await asyncio.sleep(down_for)
        host.link_up()
        if name.startswith("srv"):
            await asyncio.to_thread(self.cluster.start_server, name, self.env)
        else:
            self.cluster.start_worker(name, self.env)
        self.lb.losses[-1] = (start, time.monotonic())
        self.say(f"host {name} back")

    async def lose_worker_mid_build(self, victim: Any) -> None:
        """A BDR of 128 big artworks, then the loss of whichever worker host reads the vault for
        it (its process holds artwork files open: it is building)."""
        body = {"post_ids": random.sample(victim.downloads, 128), "send_email": True}
        a = await self.api.call("POST", "/api/pmd/bdr", json=body, headers=victim.auth)
        if a is not None and a.status == 202:
            self.ledger.seen_bdrs.add(a.json()["id"])
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            for name in ("wrk1", "wrk2"):
                if self.cluster.reads_vault(name):
                    await self.lose_host(name, 15)
                    return
            await asyncio.sleep(0.01)
        self.ledger.violation("fault not injected: no worker host was building within 40 s")

    async def cut(self, name: str, peer: str, seconds: float) -> None:
        host, other = self.cluster.host(name), self.cluster.host(peer)
        host.cut_from(other)
        self.say(f"host {name} cut off from {peer} for {seconds:.0f} s")
        await asyncio.sleep(seconds)
        host.reconnect_to(other)
        self.say(f"host {name} reaches {peer} again")

    async def run(self, plan: list[tuple[float, Callable[[], Coroutine[Any, Any, None]]]]) -> None:
        t0 = self.ledger.t0
        running = []
        for at, fault in plan:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            running.append(asyncio.create_task(fault()))
        await asyncio.gather(*running)


def schedule(
    f: Faults, duration: float, victim: Any
) -> list[tuple[float, Callable[[], Coroutine[Any, Any, None]]]]:
    return [
        (0.05 * duration, lambda: f.lose_worker_mid_build(victim)),
        (0.20 * duration, lambda: f.cut("wrk2", "redis", 30)),
        (0.40 * duration, lambda: f.lose_host("srv1", 15)),
        (0.55 * duration, lambda: f.cut("wrk2", "db", 30)),
    ]


async def prepare(cluster: Cluster, env: dict[str, str], users: int) -> Seed:
    conn = await connect(env["DATABASE_URL"], "pmd-cluster")
    try:
        # The run's own connections name the service's tables unqualified, as the service does.
        await conn.execute("ALTER DATABASE pmd SET search_path = pmd, public")
        await apply_migrations(conn)
        from sqids.constants import DEFAULT_ALPHABET

        data = await seed(conn, cluster.run_dir / "vault", cluster.jwt_secret,
                          PublicIds(DEFAULT_ALPHABET), users=users, posts_per_user=160,
                          victim_posts=130, rng=random.Random(20261123))  # fmt: skip
    finally:
        await conn.close()
    await create_bucket(Seaweed(env["AWS_ENDPOINT_URL"], cluster.run_dir), BUCKET)
    return data


async def settle(pool: asyncpg.Pool, ledger: Ledger, bound: float) -> bool:
    start = time.monotonic()
    while time.monotonic() - start < bound:
        row = await pool.fetchrow(SQL_UNSETTLED)
        assert row is not None
        if row["open"] == 0 and row["emails"] == 0:
            print(f"  [{ledger.at()}] settled after {time.monotonic() - start:.0f} s", flush=True)
            return True
        await asyncio.sleep(1)
    return False


async def run(cluster: Cluster, ci: bool) -> int:
    duration, users = (70.0, 4) if ci else (180.0, 8)
    client = cluster.host("client").address
    smtp = SmtpServer(port=1025)
    from aiosmtpd.controller import Controller

    smtp.controller = Controller(smtp, hostname=client, port=smtp.port)
    smtp.controller.start()
    env = cluster.service_env(
        SMTP_HOST=client, SMTP_PORT="1025", BASE_URL="http://pmd.cluster",
        BDR_DOWNLOAD_MODE="proxy", BDR_DAILY_LIMIT=str(DAILY_LIMIT),
        BDR_RETRY_BASE_SECONDS="2", BDR_STALE_SECONDS="15", BDR_PENDING_GRACE_SECONDS="5",
        SSE_MAX_PER_USER="10",
    )  # fmt: skip
    data = await prepare(cluster, env, users)
    for name in ("srv1", "srv2"):
        await asyncio.to_thread(cluster.start_server, name, env)
    for name in ("wrk1", "wrk2"):
        cluster.start_worker(name, env)
    await asyncio.to_thread(cluster.start_lb)
    settings = Settings(**{k.lower(): v for k, v in env.items() if k in _FIELDS},
                        jwt_secret_key=cluster.jwt_secret)  # fmt: skip
    assert settings.bdr_bucket is not None
    zip_store = open_store(settings.bdr_bucket, settings.s3_access)
    pool = await create_pool(env["DATABASE_URL"], "pmd-cluster", max_size=8)
    lb = Balancer(cluster.host("lb").address)
    clients: list[SseClient] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            ledger = Ledger(t0=time.monotonic())
            api = ClusterApi(http, [lb], ledger)  # type: ignore[list-item]
            await _until_ready(http, lb)
            for u in [*data.users, data.victim]:
                for n, ticket in enumerate((False, True)):
                    clients.append(SseClient(api, u, f"sse-{u.handle}-{n}", 0, ticket))
            tasks += [asyncio.create_task(c.run()) for c in clients]
            await wait_streams(clients, 30)
            faults = Faults(cluster, env, ledger, lb, pool, api)
            print(f"workload: {users} actors for {duration:.0f} s through the balancer, "
                  f"{len(clients)} SSE clients; faults:", flush=True)  # fmt: skip
            ledger.t0 = time.monotonic()
            until = ledger.t0 + duration
            actors = [
                Actor(api, pool, data, u, every=duration / (20 if i < 2 else 9),
                      bdr_root=cluster.run_dir / "bdr", zip_store=zip_store)
                for i, u in enumerate(data.users)
            ]  # fmt: skip
            await asyncio.gather(
                faults.run(schedule(faults, duration, data.victim)), *(a.run(until) for a in actors)
            )
            print(f"  [{ledger.at()}] workload over", flush=True)
            settled = await settle(pool, ledger, 150)
            views = await converge(api, data, clients, 30)
            bdrs = await checks.rows(pool)
            report = checks.Report()
            if not settled:
                report.violations.append("drain: BDRs or emails still open at the bound")
            await checks.check_terminal(report, api, data, ledger, bdrs)
            await checks.check_bucket(report, pool, zip_store, settings.bdr_bucket,
                                      settings.s3_access, data, bdrs, uploads_within=75)  # fmt: skip
            checks.check_emails(report, bdrs, smtp.received())
            checks.check_sse(report, clients, views)
            checks.check_actions(report, ledger)
            await checks.check_limit(report, pool, DAILY_LIMIT, ledger)
            checks.check_5xx(report, ledger)
            served = await _served_by(cluster)
            report.info(f"requests each server host answered (HAProxy): {served}")
            for k, n in sorted(ledger.counts.items()):
                if not k.startswith("actions:"):
                    report.info(f"{k}: {n}")
            violations = report.violations + ledger.violations
            print("checks:")
            print("\n".join(report.lines))
            for v in violations[:40]:
                print(f"  VIOLATION {v}")
            print(f"cluster: {'OK' if not violations else 'FAILED'}: {len(violations)} violations")
            return 0 if not violations else 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
        smtp.stop()


_FIELDS = {"DATABASE_URL", "REDIS_URL", "BDR_STORE", "AWS_ENDPOINT_URL", "AWS_REGION",
           "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # fmt: skip


async def _served_by(cluster: Cluster) -> dict[str, int]:
    out: dict[str, int] = {}
    stat = await asyncio.to_thread(cluster.haproxy, "show stat")
    header = stat.lstrip("# ").splitlines()[0].split(",")
    for line in stat.splitlines()[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "servers" and row.get("svname", "").startswith("srv"):
            out[row["svname"]] = int(row.get("stot") or 0)
    return out


async def _until_ready(http: aiohttp.ClientSession, lb: Balancer, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(f"{lb.base}/readyz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.5)
    raise RuntimeError("the balancer did not answer /readyz 200")

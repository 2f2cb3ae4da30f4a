"""How capacity grows, and what shared part gives out first: `python -m bench.capacity` (root).

The cluster of runs/cluster/ (`--servers` server hosts of SERVER_PROCESSES=2, `--workers` worker
hosts), each part with every host's CPU and the machine's: (1) list calls a second by server
hosts in HAProxy's rotation, and the database connections held; (2) PostgreSQL connections: the
start-up check past a default `max_connections`, and a full database; (3) BDRs a second by worker
hosts (bench/drain.py) and Redis commands per BDR, stream and idle worker; (4) redis-benchmark;
(5) NOTIFY fan-out to 1 … 200 listeners; (6) the bucket's PUT and GET. docs/scaling.md shows them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import obstore

from bench import cli
from bench.drain import Rig, commands, delta, drain, until
from bench.objects import plain_put, store_at
from bench.runner import bounded
from bench.show import show
from pmd_service.core.redis_client import create_redis
from runs.chaos.seed import Seed
from runs.cluster.hosts import BUCKET, SERVICE_ROLE, Cluster, enter, up
from runs.cluster.netns import possible
from support.measures import cpu_seconds, percentile
from support.stack import CHECKOUT

T = TypeVar("T")
LIST_PATH = "/api/pmd/posts?limit=50"
LIST_SECONDS, LIST_CONCURRENCY = 8.0, 32
DRAIN_LIMIT_S = 240.0
STREAM_OPENS = 20
IDLE_SECONDS = 5.0
LISTENERS = (1, 10, 50, 100, 200)
NOTIFIES = 150
OBJECT_BYTES, OBJECTS, OBJECTS_AT_ONCE = 8 << 20, 12, 4
# A default PostgreSQL: max_connections 100, 3 reserved for superusers.
DEFAULT_MAX_CONNECTIONS, DEFAULT_RESERVED = 100, 3
REDIS_COMMANDS = "set,get,zadd,lpush,incr"

SQL_BACKENDS = f"""
SELECT coalesce(host(client_addr), 'local') AS addr, count(*)::int AS n
FROM pg_stat_activity WHERE usename = '{SERVICE_ROLE}' GROUP BY 1
"""


def _netns(pid: int | str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


@dataclass
class Hosts(Rig):
    """The drain's rig on the cluster, and what the other parts use. Its parties: the hosts,
    each every process in its network namespace."""

    cluster: Cluster
    env: dict[str, str]
    data: Seed

    @asynccontextmanager
    async def workers(self, n: int) -> AsyncIterator[None]:
        names = self.cluster.workers[:n]
        addresses = {self.cluster.host(name).address for name in names}

        async def polling() -> bool:
            # Each worker host holds a Redis connection once its worker polls the queue.
            clients = await self.redis.client_list()
            return addresses <= {c["addr"].rsplit(":", 1)[0] for c in clients}

        for name in names:
            self.cluster.start_worker(name, self.env)
        try:
            await until(polling, 90, f"worker hosts {names}")
            await asyncio.sleep(2.0)  # their start-up sweep and first polls
            yield
        finally:
            for name in names:
                await asyncio.to_thread(self.cluster.host(name).kill_all)

    async def parties(self) -> dict[str, dict[Any, float]]:
        return await asyncio.to_thread(self._by_host)

    def _by_host(self) -> dict[str, dict[Any, float]]:
        hosts = self.cluster.net.hosts
        ns = {_netns(h.holder.pid): n for n, h in hosts.items() if h.holder is not None}
        # The client host's processes: this one, counted apart.
        out: dict[str, dict[Any, float]] = {n: {} for n in hosts if n != "client"}
        for pid in (e.name for e in Path("/proc").iterdir() if e.name.isdigit()):
            if (name := ns.get(_netns(pid))) in out:
                out[name][pid] = cpu_seconds(int(pid))
        return out

    async def metered(self, work: Awaitable[T]) -> tuple[T, dict[str, float]]:
        result, cpu = await super().metered(work)
        del cpu["iowait"]  # docs/scaling.md takes every other key but a few for a party
        return result, cpu


# --- 1. list requests through the balancer ---------------------------------------------------


async def list_load(rig: Hosts) -> dict[str, Any]:
    """The users' list call from LIST_CONCURRENCY clients for LIST_SECONDS."""
    statuses: Counter[str] = Counter()
    took: list[float] = []
    end = time.monotonic() + LIST_SECONDS

    async def loop(i: int) -> None:
        auth = rig.data.users[i % len(rig.data.users)].auth
        while time.monotonic() < end:
            t = time.monotonic()
            try:
                async with rig.http.get(rig.base + LIST_PATH, headers=auth) as resp:
                    await resp.read()
                    statuses[str(resp.status)] += 1
            except (aiohttp.ClientError, TimeoutError):
                statuses["connection error"] += 1
                continue
            took.append(time.monotonic() - t)

    await asyncio.gather(*(loop(i) for i in range(LIST_CONCURRENCY)))
    ms = {q: round(percentile(took, q) * 1000, 1) if took else None for q in (0.5, 0.99)}
    return {"per_s": round(statuses["200"] / LIST_SECONDS, 1), "p50_ms": ms[0.5],
            "p99_ms": ms[0.99], "statuses": dict(statuses)}  # fmt: skip


async def in_rotation(cluster: Cluster, n: int) -> None:
    for i, name in enumerate(cluster.servers):
        state = "ready" if i < n else "maint"
        await asyncio.to_thread(cluster.haproxy, f"set server servers/{name} state {state}")
    for name in cluster.servers[:n]:
        await cluster.until_up_at_balancer(name)


async def peak_backends(
    db: asyncpg.Pool, stop: asyncio.Event, names: dict[str, str]
) -> dict[str, int]:
    """The most connections the service role held at once, by the host they came from."""
    peak: Counter[str] = Counter()
    while not stop.is_set():
        now = Counter[str]()
        for row in await db.fetch(SQL_BACKENDS):
            now[names.get(row["addr"], row["addr"])] += row["n"]
        now["total"] = sum(now.values())
        peak = peak | now  # the larger of each
        await asyncio.sleep(0.2)
    return dict(peak)


async def list_curve(rig: Hosts, label: str, counts: list[int]) -> list[dict[str, Any]]:
    names = {h.address: n for n, h in rig.cluster.net.hosts.items()}
    out = []
    for n in counts:
        await in_rotation(rig.cluster, n)
        stop = asyncio.Event()
        sampler = asyncio.create_task(peak_backends(rig.db, stop, names))
        figures, cpu = await rig.metered(list_load(rig))
        stop.set()
        figures |= {"server_hosts": n, "connections": await sampler, "cpu": cpu}
        show(f"  {label}: {n} server host(s)", figures)
        out.append(figures)
    return out


# --- 2. connections: the start-up check, and a database that is full ------------------------


def start_check(cluster: Cluster, env: dict[str, str], processes: int) -> dict[str, Any]:
    """`python server.py` with `processes` SERVER_PROCESSES on a spare port: its exit status
    and last line (it refuses before any process starts when they cannot fit)."""
    host = cluster.host(cluster.servers[0])
    argv = host.command([sys.executable, str(CHECKOUT / "server.py")])
    own = {"HOST": host.address, "PORT": "8090", "SERVER_PROCESSES": str(processes)}
    # Killed past 20 s (exit None): it started, so it fit.
    code, out = bounded(argv, 20, env=env | own, stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, errors="replace")  # fmt: skip
    lines = [line for line in (out or "").splitlines() if line.strip()]
    # Its own one line when it refuses; the last logged error otherwise, not a traceback's tail.
    said = [line for line in lines if " ERROR " in line or " WARNING " in line] or lines
    return {"processes": processes, "exit": code, "last_line": said[-1] if said else ""}


async def start_checks(
    rig: Hosts, env: dict[str, str], direct: dict[str, str]
) -> list[dict[str, Any]]:
    """The start-up check with the role's limit at a default PostgreSQL's: 8 and 9 processes
    direct, 9 through PgBouncer. It reads what the database allows, so no server runs."""
    for name in rig.cluster.servers:
        await asyncio.to_thread(rig.cluster.host(name).kill_all)
    limit = DEFAULT_MAX_CONNECTIONS - DEFAULT_RESERVED
    await rig.db.execute(f"ALTER ROLE {SERVICE_ROLE} CONNECTION LIMIT {limit}")
    try:
        checks = [await asyncio.to_thread(start_check, rig.cluster, direct | pooled, n)
                  for pooled, n in (({}, 8), ({}, 9), (env, 9))]  # fmt: skip
    finally:
        await rig.db.execute(f"ALTER ROLE {SERVICE_ROLE} CONNECTION LIMIT -1")
    for c in checks:
        print(f"  SERVER_PROCESSES={c['processes']}: exit {c['exit']}: "
              f"{c['last_line'][-160:]}", flush=True)  # fmt: skip
    checks[2]["pooler"] = "pgbouncer"
    return checks


async def full_database(rig: Hosts) -> dict[str, Any]:
    """The servers (direct, pools at their minimum) under load while the role may hold only
    two connections more than it holds now: what the clients see."""
    held = int(await rig.db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", SERVICE_ROLE))  # fmt: skip
    await rig.db.execute(f"ALTER ROLE {SERVICE_ROLE} CONNECTION LIMIT {held + 2}")
    try:
        await in_rotation(rig.cluster, len(rig.cluster.servers))
        figures = await list_load(rig)
    finally:
        await rig.db.execute(f"ALTER ROLE {SERVICE_ROLE} CONNECTION LIMIT -1")
    print(f"  a full database (role limit {held + 2}): {figures['statuses']}", flush=True)
    return figures | {"connection_limit": held + 2, "held_before": held}


# --- 3. BDRs against worker hosts, and Redis commands -----------------------------------------


async def bdrs(rig: Hosts, backlog: int) -> list[dict[str, Any]]:
    """The drain by 1, 2, … worker hosts; after the last, what its idle workers send Redis."""
    out = []
    for n in range(1, len(rig.cluster.workers) + 1):
        idle_s = IDLE_SECONDS if n == len(rig.cluster.workers) else 0.0
        r = await drain(rig, backlog, n, DRAIN_LIMIT_S, idle_s)
        used = r["redis_commands"]
        idle = used.pop("idle", None)
        per_bdr = sum(sum(c.values()) for c in used.values()) / backlog
        out.append({"worker_hosts": n, "bdrs": backlog, "seconds": r["seconds"],
                    "per_s": r["per_s"], "cpu": r["cpu"], "redis_per_bdr": round(per_bdr, 1),
                    "redis_commands": used})  # fmt: skip
        if idle is not None:
            out[-1] |= {"idle_per_worker_s": round(sum(idle.values()) / idle_s / n, 1),
                        "idle_commands": idle}  # fmt: skip
        show(f"  {n} worker host(s)", out[-1])
    return out


async def stream_opens(rig: Hosts) -> dict[str, Any]:
    """Redis commands per stream the page opens: a ticket minted, then redeemed by the stream."""
    user = rig.data.users[0]
    before = await commands(rig.redis)
    for _ in range(STREAM_OPENS):
        async with rig.http.post(f"{rig.base}/api/pmd/bdr/sse-ticket", headers=user.auth) as r:
            ticket = (await r.json())["ticket"]
        async with rig.http.get(f"{rig.base}/api/pmd/bdr/sse?ticket={ticket}") as resp:
            assert resp.status == 200, resp.status
            await resp.content.readline()
    used = delta(before, await commands(rig.redis))
    return {"opens": STREAM_OPENS, "per_open": round(sum(used.values()) / STREAM_OPENS, 2),
            "commands": used}  # fmt: skip


# --- 4. what Redis sustains, 5. NOTIFY fan-out, 6. the bucket ---------------------------------


def redis_benchmark(address: str) -> dict[str, float]:
    """Requests a second by command (redis-benchmark's CSV: "test","rps",…)."""
    out = subprocess.run(
        ["redis-benchmark", "-h", address, "-p", "6379", "-c", "50", "-n", "100000", "-q",
         "--csv", "-t", REDIS_COMMANDS],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [[c.strip('"') for c in line.split(",")] for line in out.splitlines()]
    return {r[0]: float(r[1]) for r in rows if len(r) >= 2 and r[0] != "test"}


async def notify_fanout(rig: Hosts, listeners: int) -> dict[str, Any]:
    """NOTIFIES doorbells, one at a time: commit → receipt at the first and the last listener."""
    got: dict[str, list[float]] = {}
    done: dict[str, asyncio.Event] = {}

    def heard(_c: Any, _pid: int, _channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        got[payload].append(time.monotonic())
        if len(got[payload]) == listeners:
            done[payload].set()

    async def burst() -> tuple[list[float], list[float]]:
        first, last = [], []
        for key in map(str, range(NOTIFIES)):
            got[key], done[key] = [], asyncio.Event()
            t = time.monotonic()
            await notifier.execute("SELECT pg_notify('pmd_capacity', $1)", key)
            await asyncio.wait_for(done[key].wait(), 10)
            first.append(got[key][0] - t)
            last.append(got[key][-1] - t)
            await asyncio.sleep(0.02)
        return first, last

    conns = [await asyncpg.connect(rig.cluster.admin_url) for _ in range(listeners + 1)]
    notifier = conns.pop()
    try:
        for c in conns:
            await c.add_listener("pmd_capacity", heard)
        (first, last), cpu = await rig.metered(burst())
    finally:
        for c in [*conns, notifier]:
            await c.close()
    figures = {
        "listeners": listeners,
        "first_p50_ms": round(statistics.median(first) * 1000, 2),
        "all_p50_ms": round(statistics.median(last) * 1000, 2),
        "all_p99_ms": round(percentile(last, 0.99) * 1000, 2),
        "db_cpu_ms_per_notify": round(cpu["db"] * 1000 / NOTIFIES, 2),
        "client_cpu_ms_per_notify": round(cpu["client"] * 1000 / NOTIFIES, 2),
        "cpu": cpu,
    }
    show(f"  NOTIFY to {listeners} listeners", figures)
    return figures


def bucket(env: dict[str, str], scratch: Path) -> dict[str, Any]:
    """OBJECTS objects PUT then GET, OBJECTS_AT_ONCE at a time."""
    store = store_at(env["AWS_ENDPOINT_URL"], BUCKET, "capacity")
    local = scratch / "object.zip"
    local.write_bytes(os.urandom(OBJECT_BYTES))

    def get(i: int) -> None:
        assert len(obstore.get(store, f"o{i}").bytes()) == OBJECT_BYTES

    seconds = {}
    for name, one in (("put", lambda i: plain_put(store, f"o{i}", local)), ("get", get)):
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(OBJECTS_AT_ONCE) as ex:
            list(ex.map(one, range(OBJECTS)))
        seconds[name] = time.monotonic() - start
    mb = OBJECT_BYTES * OBJECTS / 1e6
    return {"object_mb": OBJECT_BYTES / 1e6, "objects": OBJECTS, "at_once": OBJECTS_AT_ONCE,
            **{f"{k}_mb_s": round(mb / s, 1) for k, s in seconds.items()},
            **{f"{k}_objects_s": round(OBJECTS / s, 2) for k, s in seconds.items()}}  # fmt: skip


# --- the run -------------------------------------------------------------------------------------


async def restart_servers(cluster: Cluster, env: dict[str, str]) -> None:
    """Each server host's processes killed (when any run), then its server started with `env`."""
    for name in cluster.servers:
        await asyncio.to_thread(cluster.host(name).kill_all)
    for name in cluster.servers:
        await asyncio.to_thread(cluster.start_server, name, env)


async def measure(cluster: Cluster, backlog: int) -> dict[str, Any]:
    from runs.cluster.client import prepare, until_ready

    hosts = list(range(1, len(cluster.servers) + 1))
    env = cluster.service_env(BDR_DAILY_LIMIT="10000", BDR_DOWNLOAD_MODE="proxy",
                              BASE_URL="http://pmd.cluster", SSE_MAX_PER_USER="100")  # fmt: skip
    direct = env | {"DATABASE_URL": env["DATABASE_DIRECT_URL"], "DATABASE_POOLER": "none"}
    data = await prepare(cluster, env, users=4)
    await restart_servers(cluster, env)
    await asyncio.to_thread(cluster.start_lb)
    admin = await asyncpg.create_pool(cluster.admin_url, min_size=1, max_size=4)
    redis = create_redis(env["REDIS_URL"])
    out: dict[str, Any] = {"server_processes_per_host": 2, "list_clients": LIST_CONCURRENCY,
                           "list_seconds": LIST_SECONDS, "notifies": NOTIFIES}  # fmt: skip
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            users = [(u.auth, u.downloads) for u in data.users]
            base = f"http://{cluster.host('lb').address}"
            rig = Hosts(http, base, users, admin, redis, cluster, env, data)
            await until_ready(http, rig)  # type: ignore[arg-type]
            print("1. list requests through the balancer (PgBouncer)", flush=True)
            out["lists"] = await list_curve(rig, "via PgBouncer", hosts)
            print("3. BDRs against worker hosts", flush=True)
            out["streams_redis"] = await stream_opens(rig)
            out["bdrs"] = await bdrs(rig, backlog)
            print("2. connections: servers direct", flush=True)
            await restart_servers(cluster, direct)
            out["lists_direct"] = await list_curve(rig, "direct", [len(hosts)])
            # Fresh processes, their pools at the minimum: the limit then stops them growing.
            await restart_servers(cluster, direct)
            out["full_database"] = await full_database(rig)
            out["start_checks"] = await start_checks(rig, env, direct)
            print("4. Redis", flush=True)
            redis_host = cluster.host("redis").address
            out["redis_benchmark"] = await asyncio.to_thread(redis_benchmark, redis_host)
            show("  requests/s", out["redis_benchmark"])
            print("5. NOTIFY fan-out", flush=True)
            out["notify"] = [await notify_fanout(rig, n) for n in LISTENERS]
            print("6. the bucket", flush=True)
            out["bucket"] = await asyncio.to_thread(bucket, env, cluster.run_dir)
            show("  the bucket", out["bucket"])
    finally:
        await redis.aclose()
        await admin.close()
    return out


def main() -> None:
    p = cli.parser("capacity", __doc__)
    p.add_argument("--servers", type=int, default=3, help="server hosts (at most 9)")
    p.add_argument("--workers", type=int, default=3, help="worker hosts (at most 9)")
    p.add_argument("--backlog", type=int, default=160, help="small BDRs in each drain")
    args = p.parse_args()
    if (why := possible()) is not None:
        sys.exit(f"capacity: cannot run here: {why}")
    run_dir = Path(tempfile.mkdtemp(prefix="pmd-capacity-"))
    os.chmod(run_dir, 0o755)  # noqa: S103 - PostgreSQL's own user reads what is written here
    cluster = up(run_dir, servers=args.servers, workers=args.workers)
    try:
        enter(cluster.host("client").ns)
        started = time.monotonic()
        figures = asyncio.run(measure(cluster, args.backlog))
        figures |= {"seconds": round(time.monotonic() - started),
                    "cores": len(os.sched_getaffinity(0))}  # fmt: skip
    except BaseException:
        print(f"logs in {cluster.logs}")
        raise
    finally:
        cluster.net.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    cli.save(args.json, figures)


if __name__ == "__main__":
    main()

"""The cluster's hosts and what runs on them."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runs.chaos.procs import open_files
from runs.cluster.netns import Host, Network
from support import pgbouncer, redis
from support.release import CURRENT, Release, StartFailed
from support.seaweed import ACCESS_KEY, REGION, S3_CONFIG, SECRET_KEY, server_argv
from support.stack import eventually, wait_ready

PG_BIN = Path("/usr/lib/postgresql/15/bin")
CLONE_NEWNET = 0x40000000
BUCKET = "pmd-cluster"
# Each host's name and the last octet of its address.
HOSTS = dict(lb=5, db=10, redis=11, store=12, client=50, srv1=21, srv2=22, wrk1=31, wrk2=32)
SERVICE_ROLE = "pmd_svc"  # made from `python -m pmd_service grants`
LINK_BUFFER = 524288  # the most a socket of a download's path buffers, each way
# The steps of a run, in order; `--fail-at STEP` stops it right after STEP.
STEPS = (
    "folder",
    "switch",
    "host",
    "hosts",
    "postgres",
    "pgbouncer",
    "redis",
    "store",
    "client",
    "smtp",
    "database",
    "servers",
    "workers",
    "balancer",
    "streams",
    "workload",
)
HAPROXY = """global
    maxconn 9000
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    timeout check 3s
    option redispatch
    retries 2
frontend fe
    bind {address}:80
    default_backend servers
backend servers
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    http-response set-header X-Served-By %s
"""


@dataclass
class Steps:
    fail_at: str | None = None
    fail_with: str = "error"
    t0: float = field(default_factory=time.monotonic)

    def reached(self, step: str) -> None:
        assert step in STEPS, step
        print(f"  [start {time.monotonic() - self.t0:5.1f}s] {step}", flush=True)
        if step != self.fail_at:
            return
        if self.fail_with == "error":
            raise StartFailed(f"failing after step {step!r}, as --fail-at asked")
        os.kill(os.getpid(), signal.SIGTERM if self.fail_with == "sigterm" else signal.SIGINT)
        time.sleep(1)  # the handler runs in the main thread at its next instruction


@dataclass
class Cluster:
    net: Network
    run_dir: Path
    steps: Steps
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    previous: Release | None = None  # --upgrade-from: what the hosts run until rolled
    releases: dict[str, Release] = field(default_factory=dict)  # host: its code, if not CURRENT

    @property
    def servers(self) -> list[str]:
        return [n for n in self.net.hosts if n.startswith("srv")]

    @property
    def workers(self) -> list[str]:
        return [n for n in self.net.hosts if n.startswith("wrk")]

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{self.host('db').address}:5432/pmd"

    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    def start_db(self) -> None:
        db, data, ini = self.host("db"), self.net.private / "pg", self.run_dir / "pgbouncer.ini"
        db.run(["sh", "-c", f"mkdir -p {data} && chown postgres {data} && chmod 700 {data}"])
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        db.run([*initdb, "--no-sync"], user="postgres")
        subnet = f"{db.address.rsplit('.', 1)[0]}.0/24"
        db.run(["sh", "-c", f"echo 'host all all {subnet} trust' >> {data}/pg_hba.conf"])
        options = [f"listen_addresses={db.address}", f"unix_socket_directories={data}"]
        options += ["max_connections=300", "fsync=off", "synchronous_commit=off"]
        argv = [str(PG_BIN / "postgres"), "-D", str(data), *(f"--{o}" for o in options)]
        self._serve("db", "postgres", 5432, "PostgreSQL", argv, user="postgres")
        self.steps.reached("postgres")
        db.run([str(PG_BIN / "createdb"), "-h", str(data), "pmd"], user="postgres")
        config = pgbouncer.config(
            server=(db.address, 5432),
            listen=(db.address, 6432),
            folder=ini.parent,
            pool_size=40,
            max_client_conn=4000,
        )
        users = pgbouncer.userlist({"postgres": "", SERVICE_ROLE: ""})
        for path, text in ((ini, config), (ini.parent / "userlist.txt", users)):
            path.write_text(text)
            shutil.chown(path, "postgres")
        self._serve("db", "pgbouncer", 6432, "PgBouncer", ["pgbouncer", str(ini)], user="postgres")
        self.steps.reached("pgbouncer")

    def start_redis(self) -> None:
        address = self.host("redis").address
        argv = redis.server_argv(address, 6379, self.net.private, "--protected-mode", "no")
        self._serve("redis", "redis", 6379, "Redis", argv)
        self.steps.reached("redis")

    def start_store(self) -> None:
        store, private = self.host("store"), self.net.private
        store.run(["mkdir", "-p", str(private / "weed")])
        (config := self.run_dir / "s3.json").write_text(S3_CONFIG)
        # Its local sockets in the host's own folder, not /tmp, where another run's take them.
        sockets = [f"-{s}.localSocket={private}/{s}.sock" for s in ("filer", "s3")]
        argv = server_argv(private / "weed", store.address, config, 8333, *sockets)
        self._serve("store", "weed", 8333, "SeaweedFS S3", argv, within=60)
        self.steps.reached("store")

    def _serve(
        self,
        name: str,
        log: str,
        port: int,
        what: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        user: str | None = None,
        within: float = 30,
    ) -> None:
        host, path = self.host(name), self.logs / f"{log}.log"
        proc = host.spawn(argv, path, env, user)
        connect = f"import socket; socket.create_connection(({host.address!r}, {port}), 1).close()"
        probe = host.command(["python3", "-c", connect])

        def listens() -> bool:
            return subprocess.run(probe, capture_output=True).returncode == 0

        wait_ready(proc, listens, what, path, within, error=StartFailed)

    def service_env(self, **extra: str) -> dict[str, str]:
        db, redis, store = self.host("db"), self.host("redis"), self.host("store")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": f"postgresql://{SERVICE_ROLE}@{db.address}:6432/pmd",
            "DATABASE_DIRECT_URL": f"postgresql://{SERVICE_ROLE}@{db.address}:5432/pmd",
            "DATABASE_POOLER": "pgbouncer",
            "REDIS_URL": f"redis://{redis.address}:6379/0",
            "JWT_SECRET_KEY": self.jwt_secret,
            "PMD_DEV": "false",
            "PMD_DATA_DIR": str(self.net.private / "data"),
            "VAULT_PATH": str(self.net.private / "vault"),
            "BDR_PATH": str(self.net.private / "bdr"),
            "BDR_STORE": f"s3://{BUCKET}/zips",
            "AWS_ENDPOINT_URL": f"http://{store.address}:8333",
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AUTO_MIGRATE": "false",
            "METRICS_PORT": "0",
            "LOG_FORMAT": "text",
            **extra,
        }

    async def start(self, name: str, env: dict[str, str]) -> None:
        host, private = self.host(name), self.net.private
        release = self.releases.get(name, CURRENT)
        env = env | release.env
        vault, source = private / "vault", self.run_dir / "vault"
        host.run(["mkdir", "-p", str(vault), str(private / "data")])
        if name.startswith("srv"):
            every_address = "0.0.0.0"  # noqa: S104 - the host's own namespace: its one link
            own = {"HOST": every_address, "PORT": "8080", "SERVER_PROCESSES": "2"}
            what, argv = f"the server on {name}", release.argv("serve")
            await asyncio.to_thread(self._serve, name, name, 8080, what, argv, env | own, within=60)
            return
        # Only worker hosts see the vault, read-only.
        read_only = f"mount --bind {source} {vault} && mount -o remount,bind,ro {vault}"
        host.run(["sh", "-c", f"mountpoint -q {vault} || ({read_only})"])
        host.spawn(release.argv("worker"), self.logs / f"{name}.log", env)

    async def until_up_at_balancer(self, name: str, within: float = 60) -> None:
        async def up() -> bool:
            rows = await asyncio.to_thread(self.stat)
            return any(r.get("svname") == name and r.get("status") == "UP" for r in rows)

        await eventually(up, within, f"{name} up at the balancer", 0.2)

    def reads_vault(self, name: str) -> bool:
        vault = str(self.net.private / "vault") + "/"
        return any(f.startswith(vault) for p in self.host(name).procs for f in open_files(p.pid))

    def start_lb(self) -> None:
        lb, config = self.host("lb"), self.run_dir / "haproxy.cfg"
        text = HAPROXY.format(sock=self.run_dir / "haproxy.sock", address=lb.address)
        for h in map(self.host, self.servers):
            text += f"    server {h.name} {h.address}:8080 check inter 1s fall 3 rise 2\n"
        config.write_text(text)
        self._serve("lb", "haproxy", 80, "HAProxy", ["haproxy", "-f", str(config), "-db"])

    def stat(self) -> list[dict[str, str]]:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.run_dir / "haproxy.sock"))
            s.sendall(b"show stat\n")
            stat = s.makefile().read()
        header = stat.lstrip("# ").splitlines()[0].split(",")
        return [dict(zip(header, line.split(","), strict=False)) for line in stat.splitlines()[1:]]


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """This process (before any thread starts) in namespace `ns`, and back afterwards."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        _setns(own)
        os.close(own)
        os.close(target)


def _setns(fd: int) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def up(run_dir: Path, steps: Steps, owner: contextlib.ExitStack) -> Cluster:
    """The network, its hosts and the shared parts started, all undone when `owner` closes."""
    net = Network(run_dir, owner)
    steps.reached("switch")
    for name, octet in HOSTS.items():
        net.add(name, octet)
        if name == "lb":
            steps.reached("host")
    steps.reached("hosts")
    # Socket buffers of a real link, not loopback's, on a download's whole path: else no server
    # stop could cut it, and how long it reads on after one would have no bound.
    buffers = [
        f"net.ipv4.tcp_rmem=4096 131072 {LINK_BUFFER}",
        f"net.ipv4.tcp_wmem=4096 16384 {LINK_BUFFER}",
    ]
    for name in net.hosts:
        if name in ("client", "lb") or name.startswith("srv"):
            net.hosts[name].run(["sysctl", "-q", "-w", *buffers])
    cluster = Cluster(net, run_dir, steps)
    cluster.logs.mkdir(parents=True, exist_ok=True)
    (run_dir / "vault").mkdir(exist_ok=True)
    cluster.start_db()
    cluster.start_redis()
    cluster.start_store()
    return cluster

"""A cluster on one machine: `python -m harness.cluster` (root), `--ci` for the short run.

Each host is a network namespace with its own address on a private switch and its own mount
namespace (harness/netns.py), so no host reaches another but over the network and none sees
another's files:

    db      10.77.0.10   PostgreSQL, PgBouncer (transaction mode) in front on :6432: the
                         servers' and workers' pools go through it, LISTEN and migrations not
    redis   10.77.0.11   Redis (the job queue)
    store   10.77.0.12   SeaweedFS, S3 on :8333 (the ZIPs' bucket)
    srv1/2  10.77.0.21/22  `python server.py`, SERVER_PROCESSES=2 each (srv3… when asked)
    wrk1/2  10.77.0.31/32  the arq worker; only worker hosts mount the vault (read-only)
    lb      10.77.0.5    HAProxy on :80, health checks on /readyz
    client  10.77.0.50   this process after start-up: the workload, the SMTP server, the checks

Every request of the workload goes through the load balancer. The run then loses a whole
server host and a whole worker host mid-build (every process killed, the link down), cuts a
worker host off from Redis for 30 s and another from the database, and drains a server host at
the balancer so that its streams reconnect to the other one. The chaos run's checks hold
(harness/chaos_checks.py): every BDR terminal, every ZIP byte-exact, every email once, every
SSE view equal to the database, every batch all-or-nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import pgbouncer, tools
from harness.netns import Host, Network, possible
from harness.seaweed import ACCESS_KEY, REGION, SECRET_KEY, weed_binary
from harness.stack import CHECKOUT

PG_BIN = Path("/usr/lib/postgresql/15/bin")
CLONE_NEWNET = 0x40000000
BUCKET = "pmd-cluster"
SERVICE_ROLE = (
    "pmd_svc"  # made from `python -m pmd_service grants`: the host's tables, column by column
)


@dataclass
class Cluster:
    net: Network
    run_dir: Path
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    max_connections: int = 300

    @property
    def servers(self) -> list[str]:
        return [n for n in self.net.hosts if n.startswith("srv")]

    @property
    def workers(self) -> list[str]:
        return [n for n in self.net.hosts if n.startswith("wrk")]

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    # --- the shared parts -------------------------------------------------------------------

    def start_db(self) -> None:
        db = self.host("db")
        data = self.net.private / "pg"
        db.run(["sh", "-c", f"mkdir -p {data} && chown postgres {data} && chmod 700 {data}"])
        db.run([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                "--no-sync"], user="postgres")  # fmt: skip
        db.run(["sh", "-c", f"echo 'host all all {db.address.rsplit('.', 1)[0]}.0/24 trust' "
                            f">> {data}/pg_hba.conf"])  # fmt: skip
        db.spawn(
            [str(PG_BIN / "postgres"), "-D", str(data), "-c", f"listen_addresses={db.address}",
             "-c", f"unix_socket_directories={data}", "-c", f"max_connections={self.max_connections}",
             "-c", "fsync=off", "-c", "synchronous_commit=off"],
            self.logs / "postgres.log", user="postgres",
        )  # fmt: skip
        _wait_port(db, db.address, 5432, "PostgreSQL")
        db.run([str(PG_BIN / "createdb"), "-h", str(data), "pmd"], user="postgres")
        ini = self.net.private / "pgbouncer.ini"
        text = pgbouncer.config(server=(db.address, 5432), listen=(db.address, 6432),
                                folder=ini.parent, pool_size=40, max_client_conn=4000)  # fmt: skip
        users = pgbouncer.userlist({"postgres": "", SERVICE_ROLE: ""})
        # Written from inside the host: its private folder is a tmpfs of its own mount namespace.
        db.run(["sh", "-c", f"cat > {ini} <<'EOF'\n{text}EOF\n"
                            f"cat > {ini.parent}/userlist.txt <<'EOF'\n{users}EOF\n"
                            f"chown postgres {ini} {ini.parent}/userlist.txt"])  # fmt: skip
        db.spawn(["pgbouncer", str(ini)], self.logs / "pgbouncer.log", user="postgres")
        _wait_port(db, db.address, 6432, "PgBouncer")

    def start_redis(self) -> None:
        redis = self.host("redis")
        redis.spawn(
            ["redis-server", "--bind", redis.address, "--port", "6379", "--protected-mode", "no",
             "--save", "", "--appendonly", "no", "--dir", str(self.net.private)],
            self.logs / "redis.log",
        )  # fmt: skip
        _wait_port(redis, redis.address, 6379, "Redis")

    def start_store(self) -> None:
        store = self.host("store")
        config = self.net.private / "s3.json"
        identities = {"identities": [{
            "name": "pmd", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}  # fmt: skip
        store.run(["sh", "-c", f"mkdir -p {self.net.private}/weed && "
                               f"echo '{json.dumps(identities)}' > {config}"])  # fmt: skip
        store.spawn(
            [weed_binary(), "server", f"-dir={self.net.private}/weed", f"-ip={store.address}",
             f"-ip.bind={store.address}", "-s3", "-s3.port=8333", "-s3.port.iceberg=0",
             "-s3.port.lance=0", f"-s3.config={config}", "-volume.max=16",
             "-master.volumeSizeLimitMB=256"],
            self.logs / "weed.log",
        )  # fmt: skip
        _wait_port(store, store.address, 8333, "SeaweedFS S3", within=60)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{self.host('db').address}:5432/pmd"

    def service_env(self, **extra: str) -> dict[str, str]:
        db, redis, store = self.host("db"), self.host("redis"), self.host("store")
        private = self.net.private
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # Pooled queries through PgBouncer in transaction mode; LISTEN and migrations direct.
            "DATABASE_URL": f"postgresql://{SERVICE_ROLE}@{db.address}:6432/pmd",
            "DATABASE_DIRECT_URL": f"postgresql://{SERVICE_ROLE}@{db.address}:5432/pmd",
            "DATABASE_POOLER": "pgbouncer",
            "REDIS_URL": f"redis://{redis.address}:6379/0",
            "JWT_SECRET_KEY": self.jwt_secret,
            "PMD_DEV": "false",
            "PMD_DATA_DIR": str(private / "data"),
            "VAULT_PATH": str(private / "vault"),
            "BDR_PATH": str(private / "bdr"),
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

    def start_server(self, name: str, env: dict[str, str]) -> None:
        host = self.host(name)
        host.run(["mkdir", "-p", str(self.net.private / "data"), str(self.net.private / "vault")])
        argv = [sys.executable, str(CHECKOUT / "server.py")]
        every_address = "0.0.0.0"  # noqa: S104 - the host's own namespace: its one link
        own = {"HOST": every_address, "PORT": "8080", "SERVER_PROCESSES": "2"}
        host.spawn(argv, self.logs / f"{name}.log", env | own)
        _wait_port(host, host.address, 8080, f"the server on {name}", within=60)

    def start_worker(self, name: str, env: dict[str, str]) -> None:
        host = self.host(name)
        vault = self.net.private / "vault"
        source = self.run_dir / "vault"
        # Only worker hosts see the artworks: the vault, read-only, in their mount namespace.
        host.run(["sh", "-c", f"mkdir -p {vault} {self.net.private / 'data'} && "
                              f"(mountpoint -q {vault} || (mount --bind {source} {vault} && "
                              f"mount -o remount,bind,ro {vault}))"])  # fmt: skip
        argv = [sys.executable, "-m", "pmd_service", "worker"]
        host.spawn(argv, self.logs / f"{name}.log", env | {"PYTHONPATH": str(CHECKOUT)})

    async def until_up_at_balancer(self, name: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            stat = await asyncio.to_thread(self.haproxy, "show stat")
            header = stat.lstrip("# ").splitlines()[0].split(",")
            for line in stat.splitlines()[1:]:
                row = dict(zip(header, line.split(","), strict=False))
                if row.get("svname") == name and row.get("status") == "UP":
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{name} not up at the balancer within {within:.0f} s")

    def reads_vault(self, name: str) -> bool:
        """Whether a process of host `name` holds an artwork of the vault open (building)."""
        vault = str(self.net.private / "vault") + "/"
        for proc in self.host(name).procs:
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{proc.pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd).startswith(vault):
                            return True
        return False

    def start_lb(self) -> None:
        lb = self.host("lb")
        servers = [self.host(n) for n in self.servers]
        config = self.run_dir / "haproxy.cfg"
        config.write_text(_haproxy_cfg(lb.address, servers, self.run_dir / "haproxy.sock"))
        lb.spawn(["haproxy", "-f", str(config), "-db"], self.logs / "haproxy.log")
        _wait_port(lb, lb.address, 80, "HAProxy")

    def haproxy(self, command: str) -> str:
        """A command on HAProxy's runtime API (its admin socket)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.run_dir / "haproxy.sock"))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()


def _haproxy_cfg(address: str, servers: list[Host], sock: Path) -> str:
    lines = "\n".join(
        f"    server {h.name} {h.address}:8080 check inter 1s fall 3 rise 2" for h in servers
    )
    return f"""global
    # Two descriptors a connection and the machine's hard limit is 20,000 per process.
    maxconn 9000
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    # A server busy with a reconnect storm may answer its health check late, not never.
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
    # Which host answered: the run checks that a download in flight on a host being
    # deployed was cut and resumed elsewhere.
    http-response set-header X-Served-By %s
{lines}
"""


def _wait_port(host: Host, address: str, port: int, what: str, within: float = 30) -> None:
    probe = ["python3", "-c", "import socket,sys; socket.create_connection((sys.argv[1], "
             "int(sys.argv[2])), timeout=1).close()", address, str(port)]  # fmt: skip
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if subprocess.run(host.command(probe), capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {address}:{port} within {within:.0f} s")


def enter(ns: str) -> None:
    """Move this process (its only thread, before any other starts) into namespace `ns`: the
    workload then reaches the hosts as a client on the switch would, and nothing else."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns}")
    finally:
        os.close(fd)


def up(run_dir: Path, servers: int = 2, workers: int = 2, max_connections: int = 300) -> Cluster:
    """The network, its hosts, and the shared parts started: `servers` server hosts and
    `workers` worker hosts (at most 9 each), their processes not yet."""
    net = Network(run_dir)
    net.up()
    hosts = [("lb", 5), ("db", 10), ("redis", 11), ("store", 12), ("client", 50)]
    hosts += [(f"srv{i}", 20 + i) for i in range(1, servers + 1)]
    hosts += [(f"wrk{i}", 30 + i) for i in range(1, workers + 1)]
    for name, octet in hosts:
        net.add(name, octet)
    # A client on a real link holds a few hundred KB in flight, not the 32 MB this machine's
    # loopback tuning allows: with that, a 60 MB download sits in socket buffers within
    # seconds and no server stop could ever cut it.
    for name in ("client", "lb"):
        net.hosts[name].run(["sysctl", "-q", "-w", "net.ipv4.tcp_rmem=4096 131072 524288",
                             "net.ipv4.tcp_wmem=4096 16384 524288"])  # fmt: skip
    cluster = Cluster(net, run_dir, max_connections=max_connections)
    cluster.logs.mkdir(parents=True, exist_ok=True)
    (run_dir / "vault").mkdir(exist_ok=True)
    cluster.start_db()
    cluster.start_redis()
    cluster.start_store()
    return cluster


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m harness.cluster", description=__doc__.split("\n")[0]
    )
    p.add_argument("--ci", action="store_true", help="the short run CI executes")
    p.add_argument("--rolling", action="store_true",
                   help="a rolling deploy (every server, then every worker, restarted one at a "
                        "time) under streams, requests, downloads and builds, instead of faults")  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep the run folder (logs) on success")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if (absent := tools.missing(tools.CLUSTER)) is not None:
        print(f"cluster: {absent}", file=sys.stderr)
        return 2
    why = possible()
    if why is not None:
        print(f"cluster: cannot run here: {why}", file=sys.stderr)
        return 2
    from harness.cluster_run import run

    run_dir = Path(tempfile.mkdtemp(prefix="pmd-cluster-"))
    os.chmod(run_dir, 0o755)  # noqa: S103 - PostgreSQL's own user reads what is written here
    cluster = up(run_dir)
    code = 1
    try:
        enter(cluster.host("client").ns)
        code = asyncio.run(run(cluster, ci=args.ci, rolling=args.rolling))
    finally:
        cluster.net.close()
        if code == 0 and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"logs in {cluster.logs}")
    return code


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)

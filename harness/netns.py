"""Simulated hosts on one machine: Linux network namespaces on a private switch, each host with
a mount namespace of its own (root only).

A run makes a switch (a namespace holding one bridge) and, per host, a namespace with one veth
link to that bridge and an address on a private /24. No address, route or link is added to the
machine's own namespace: the run's traffic never leaves the namespaces it creates. Each host
also gets a mount namespace, held by a small `sleep` process, in which a tmpfs covers the run's
`private/` folder: a host sees only its own files there (PostgreSQL's data, a server's spool,
a worker's vault mount), and every process of the host is started inside both namespaces with
`nsenter`. Faults act the way a network or a power cut would: a link set down, a route to one
peer blackholed, every process of a host killed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SUBNET = "10.77.0"


def possible() -> str | None:
    """Why hosts cannot be simulated here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nsenter", "unshare"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            return f"`{tool}` is missing"
    probe = f"pmdprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(cmd)}: {done.stderr.strip()}")


@dataclass
class Host:
    """One simulated machine: a network namespace, its address, a private mount namespace."""

    name: str
    ns: str
    address: str
    private: Path  # the same path in every host; each sees its own tmpfs there
    link: str  # the switch's end of this host's veth
    switch: str
    holder: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        assert self.holder is not None, f"host {self.name} is not up"
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--", *argv]

    def spawn(
        self,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process on this host (in its own session, so it can be killed whole)."""
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - the child keeps it
        try:
            proc = subprocess.Popen(
                self.command(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        finally:
            out.close()
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], user: str | None = None, check: bool = True) -> str:
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        done = subprocess.run(self.command(argv), capture_output=True, text=True)
        if check and done.returncode:
            raise RuntimeError(f"{self.name}: {shlex.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    # --- faults ---------------------------------------------------------------------------

    def kill_all(self) -> None:
        """A power cut: SIGKILL every process group started on this host."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = [p for p in self.procs if p.poll() is None]

    def link_down(self) -> None:
        _ip("link", "set", self.link, "down", ns=self.switch)

    def link_up(self) -> None:
        _ip("link", "set", self.link, "up", ns=self.switch)

    def cut_from(self, peer: Host) -> None:
        """Packets from this host to `peer` are dropped: connections hang, as on a partition."""
        _ip("route", "add", "blackhole", f"{peer.address}/32", ns=self.ns)

    def reconnect_to(self, peer: Host) -> None:
        _ip("route", "del", "blackhole", f"{peer.address}/32", ns=self.ns)


class Network:
    """The switch and the hosts of one run; `close` removes every namespace it made."""

    def __init__(self, run_dir: Path, tag: str | None = None) -> None:
        self.tag = tag or f"pmd{os.getpid() % 100000}"
        self.switch = f"{self.tag}-sw"
        self.private = run_dir / "private"
        self.private.mkdir(parents=True, exist_ok=True)
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []

    def up(self) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("link", "add", "br0", "type", "bridge", ns=self.switch)
        _ip("link", "set", "br0", "up", ns=self.switch)
        _ip("link", "set", "lo", "up", ns=self.switch)

    def add(self, name: str, octet: int) -> Host:
        ns = f"{self.tag}-{name}"
        link = f"v{octet}"
        host = Host(name, ns, f"{SUBNET}.{octet}", self.private, link, self.switch)
        _ip("netns", "add", ns)
        self._made.append(ns)
        # Both ends are made in the host's namespace, then one moves to the switch: nothing
        # ever exists in the machine's own namespace.
        _ip("link", "add", "eth0", "type", "veth", "peer", "name", link, ns=ns)
        _ip("link", "set", link, "netns", self.switch, ns=ns)
        _ip("link", "set", link, "master", "br0", ns=self.switch)
        _ip("link", "set", link, "up", ns=self.switch)
        _ip("addr", "add", f"{host.address}/24", "dev", "eth0", ns=ns)
        _ip("link", "set", "eth0", "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        # The holder owns the host's mount namespace: a tmpfs over `private/`, private
        # propagation so nothing mounted here shows elsewhere.
        script = (
            f"mount --make-rprivate / && mount -t tmpfs -o mode=0755 pmd-{name} "
            f"{shlex.quote(str(self.private))} && exec sleep infinity"
        )
        host.holder = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--", "sh", "-c", script],
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not _mounted(host.holder.pid, self.private):
            if host.holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host {name}: its mount namespace did not come up")
            time.sleep(0.02)
        self.hosts[name] = host
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            host.kill_all()
            if host.holder is not None and host.holder.poll() is None:
                os.killpg(host.holder.pid, signal.SIGKILL)
                host.holder.wait()
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._made.clear()


def _mounted(pid: int, path: Path) -> bool:
    try:
        mounts = Path(f"/proc/{pid}/mounts").read_text()
    except OSError:
        return False
    return any(line.split()[1] == str(path) for line in mounts.splitlines())

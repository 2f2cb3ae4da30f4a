"""Simulated hosts (root only): network and mount namespaces on a switch, every process of a run
tagged (`PMD_CLUSTER_RUN`) so a last sweep finds whatever is left."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runs.chaos.procs import Processes

SUBNET = "10.77.0"
MARKER = "PMD_CLUSTER_RUN"  # in the environment of every process of a run: its tag


def possible() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
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
class Host(Processes):
    ns: str
    address: str
    private: Path  # the same path in every host; each sees its own tmpfs there
    link: str  # the switch's end of this host's veth
    switch: str
    tag: str = ""  # the run's tag (MARKER)
    holder: subprocess.Popen[bytes] | None = None

    def command(self, argv: Sequence[str]) -> list[str]:
        assert self.holder is not None, f"host {self.name} is not up"
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--", *argv]

    def marked(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return marked(self.tag, env)

    def run(self, argv: Sequence[str], user: str | None = None) -> str:
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        done = subprocess.run(self.command(argv), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{self.name}: {shlex.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        self.kill_all()
        if self.holder is not None and self.holder.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.holder.pid, signal.SIGKILL)
            self.holder.wait()
        _kill(pids_in_namespace(self.ns))

    def set_link(self, state: str) -> None:
        _ip("link", "set", self.link, state, ns=self.switch)

    def cut(self, peer: Host, off: bool = True) -> None:
        _ip("route", "add" if off else "del", "blackhole", f"{peer.address}/32", ns=self.ns)


class Network:
    """The switch and hosts of one run, which `undo` removes, last made first, then sweeps."""

    def __init__(self, run_dir: Path, undo: contextlib.ExitStack) -> None:
        self.tag = run_tag()
        self.switch = f"{self.tag}-sw"
        self.private = run_dir / "private"
        self.private.mkdir(parents=True, exist_ok=True)
        self.hosts: dict[str, Host] = {}
        self._undo = undo
        undo.callback(sweep, self.tag)  # undone last: whatever the others missed
        self._namespace(self.switch)
        _ip("link", "add", "br0", "up", "type", "bridge", ns=self.switch)
        _ip("link", "set", "lo", "up", ns=self.switch)

    def _namespace(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._undo.callback(subprocess.run, ["ip", "netns", "del", ns], capture_output=True)

    def add(self, name: str, octet: int) -> Host:
        ns, link = f"{self.tag}-{name}", f"v{octet}"
        host = Host(name, ns, f"{SUBNET}.{octet}", self.private, link, self.switch, self.tag)
        self._namespace(ns)  # its links go with it
        peer = ("peer", "name", link, "netns", self.switch)
        _ip("link", "add", "eth0", "up", "type", "veth", *peer, ns=ns)
        _ip("link", "set", link, "master", "br0", "up", ns=self.switch)
        _ip("addr", "add", f"{host.address}/24", "dev", "eth0", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        # It says "up" once its tmpfs is mounted, then sleeps: it holds the mount namespace.
        script = (
            f"mount --make-rprivate / && mount -t tmpfs -o mode=0755 pmd-{name} "
            f"{shlex.quote(str(self.private))} && echo up && exec sleep infinity"
        )
        host.holder = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--", "sh", "-c", script],
            start_new_session=True,
            env=marked(self.tag),
            stdout=subprocess.PIPE,
        )
        self._undo.callback(host.stop)
        assert host.holder.stdout is not None
        with host.holder.stdout as said:
            if said.readline() != b"up\n":
                raise RuntimeError(f"host {name}: its mount namespace did not come up")
        self.hosts[name] = host
        return host


def run_tag() -> str:
    """This process's run: its namespaces' prefix, its processes' mark."""
    return f"pmd{os.getpid() % 100000}"


def marked(tag: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**(os.environ if env is None else env), MARKER: tag}


def _pids(where: Callable[[int], bool]) -> list[int]:
    found = []
    for pid in [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]:
        with contextlib.suppress(OSError):
            if pid != os.getpid() and where(pid):
                found.append(pid)
    return found


def pids_in_namespace(ns: str) -> list[int]:
    try:
        want = os.stat(f"/run/netns/{ns}")
    except OSError:
        return []
    return _pids(lambda pid: os.path.samestat(os.stat(f"/proc/{pid}/ns/net"), want))


def pids_of_run(tag: str) -> list[int]:
    entry = f"\0{MARKER}={tag}\0".encode()
    return _pids(lambda pid: entry in b"\0" + Path(f"/proc/{pid}/environ").read_bytes())


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def sweep(tag: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while (left := pids_of_run(tag)) and time.monotonic() < deadline:
        _kill(left)
        time.sleep(0.05)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in [line.split()[0] for line in listed.splitlines() if line.startswith(f"{tag}-")]:
        _kill(pids_in_namespace(ns))
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

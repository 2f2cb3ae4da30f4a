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

What a run makes, it unmakes, whichever way it ends: each namespace, and each host's processes,
register their removal on the network's stack of undos the moment they exist (`close` runs it,
last made first undone). Every process of a run carries its tag in the environment
(`PMD_CLUSTER_RUN`), so a last sweep finds even one started in the instant before it could be
registered.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SUBNET = "10.77.0"
MARKER = "PMD_CLUSTER_RUN"  # in the environment of every process of a run: its tag


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
    tag: str = ""  # the run's tag (MARKER)
    holder: subprocess.Popen[bytes] | None = None
    # The processes that should be running: one leaves this list when it exits (`reap`).
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0
    # Pids the run stopped or is stopping on purpose (a fault, a deploy, the end of the run).
    stopping: set[int] = field(default_factory=set)
    # Every process that exited without being told to, in the order `reap` found them.
    unexpected: list[Exited] = field(default_factory=list)
    # Where each process's output begins in its log (logs are appended to across restarts).
    outputs: dict[int, tuple[Path, int]] = field(default_factory=dict)
    # A lost host is killed on a thread while the supervisor reaps on the event loop.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def command(self, argv: Sequence[str]) -> list[str]:
        assert self.holder is not None, f"host {self.name} is not up"
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--", *argv]

    def spawn(
        self, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        """Start a process on this host (in its own session, so it can be killed whole)."""
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - the child keeps it
        try:
            offset = out.tell()
            proc = subprocess.Popen(
                self.command(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=marked(self.tag, env),
                start_new_session=True,
            )
        finally:
            out.close()
        self.procs.append(proc)
        self.started += 1
        self.outputs[proc.pid] = (log, offset)
        return proc

    def expect_exit(self, proc: subprocess.Popen[bytes]) -> None:
        """`proc` is about to be stopped on purpose: its exit is no finding."""
        self.stopping.add(proc.pid)

    def reap(self) -> list[Exited]:
        """Take the processes that have exited off `procs`; those nobody stopped are returned
        (and kept in `unexpected`)."""
        with self._lock:
            return self._reap()

    def _reap(self) -> list[Exited]:
        found = []
        for proc in [p for p in self.procs if p.poll() is not None]:
            self.procs.remove(proc)
            if proc.pid not in self.stopping:
                log, offset = self.outputs.get(proc.pid, (Path(os.devnull), 0))
                argv = [str(a) for a in proc.args] if isinstance(proc.args, list) else []
                end = log.stat().st_size if log.exists() else offset
                found.append(Exited(self.name, _program(argv), proc.pid, proc.returncode,
                                    log, offset, end))  # fmt: skip
        self.unexpected += found
        return found

    def run(self, argv: Sequence[str], user: str | None = None, check: bool = True) -> str:
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        done = subprocess.run(self.command(argv), capture_output=True, text=True)
        if check and done.returncode:
            raise RuntimeError(f"{self.name}: {shlex.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    # --- faults ---------------------------------------------------------------------------

    def kill_all(self) -> None:
        """A power cut: SIGKILL every process group started on this host. One that had already
        exited by itself stays a finding (`reap`)."""
        for proc in list(self.procs):
            if proc.poll() is None:
                self.expect_exit(proc)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.reap()

    def stop(self) -> None:
        """The end of the host: its processes, its namespace's holder (with it the host's mount
        namespace and its tmpfs), and anything else still inside its network namespace."""
        self.kill_all()
        if self.holder is not None and self.holder.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.holder.pid, signal.SIGKILL)
            self.holder.wait()
        _kill(pids_in_namespace(self.ns))

    def link_down(self) -> None:
        _ip("link", "set", self.link, "down", ns=self.switch)

    def link_up(self) -> None:
        _ip("link", "set", self.link, "up", ns=self.switch)

    def cut_from(self, peer: Host) -> None:
        """Packets from this host to `peer` are dropped: connections hang, as on a partition."""
        _ip("route", "add", "blackhole", f"{peer.address}/32", ns=self.ns)

    def reconnect_to(self, peer: Host) -> None:
        _ip("route", "del", "blackhole", f"{peer.address}/32", ns=self.ns)


@dataclass(frozen=True)
class Exited:
    """A process that ended without the run stopping it."""

    host: str
    program: str
    pid: int
    code: int  # negative: the signal that killed it
    log: Path
    offset: int  # where its output begins in `log`
    end: int  # and where it ended when its exit was found (a restart appends after it)

    def output(self) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(self.offset)
                return f.read(max(0, self.end - self.offset)).decode(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        how = (
            f"killed by {signal.Signals(-self.code).name}"
            if self.code < 0 and -self.code in signal.valid_signals()
            else f"exit code {self.code}"
        )
        lines = [line for line in self.output().splitlines() if line.strip()]
        last = f"; its last line: {lines[-1][:200]}" if lines else ""
        return f"{self.host}: {self.program} (pid {self.pid}) ended unasked: {how}{last}"


class Network:
    """The switch and the hosts of one run; `close` removes every namespace it made, with every
    process in it (usable as a context manager)."""

    def __init__(self, run_dir: Path, tag: str | None = None) -> None:
        self.tag = tag or run_tag()
        self.switch = f"{self.tag}-sw"
        self.private = run_dir / "private"
        self.private.mkdir(parents=True, exist_ok=True)
        self.hosts: dict[str, Host] = {}
        self._undo = contextlib.ExitStack()
        # Undone last: whatever of the run the steps' own undos missed.
        self._undo.callback(sweep, self.tag)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _namespace(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._undo.callback(subprocess.run, ["ip", "netns", "del", ns], capture_output=True)

    def up(self) -> None:
        self._namespace(self.switch)
        _ip("link", "add", "br0", "type", "bridge", ns=self.switch)
        _ip("link", "set", "br0", "up", ns=self.switch)
        _ip("link", "set", "lo", "up", ns=self.switch)

    def add(self, name: str, octet: int) -> Host:
        ns = f"{self.tag}-{name}"
        link = f"v{octet}"
        host = Host(name, ns, f"{SUBNET}.{octet}", self.private, link, self.switch, self.tag)
        self._namespace(ns)  # its links go with it
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
            env=marked(self.tag),
        )
        self._undo.callback(host.stop)
        deadline = time.monotonic() + 10
        while not _mounted(host.holder.pid, self.private):
            if host.holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host {name}: its mount namespace did not come up")
            time.sleep(0.02)
        self.hosts[name] = host
        return host

    def close(self) -> None:
        """Every host's processes stopped and every namespace removed, the last made first."""
        self._undo.close()


def run_tag() -> str:
    """This process's run: the prefix of its namespaces' names, the mark on its processes."""
    return f"pmd{os.getpid() % 100000}"


def marked(tag: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**(os.environ if env is None else env), MARKER: tag}


def _program(argv: list[str]) -> str:
    """What a host's command line runs, without the nsenter and runuser in front."""
    if "--" in argv:
        argv = argv[len(argv) - argv[::-1].index("--") :]
    return shlex.join(Path(a).name if a.startswith("/") else a for a in argv[:4])


def _pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            yield int(entry.name)


def pids_in_namespace(ns: str) -> list[int]:
    """The processes (this one aside) in network namespace `ns`."""
    try:
        want = os.stat(f"/run/netns/{ns}")
    except OSError:
        return []
    found = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_ino, st.st_dev) == (want.st_ino, want.st_dev):
                found.append(pid)
    return found


def pids_of_run(tag: str) -> list[int]:
    """The processes (this one aside) whose environment carries the run's tag."""
    entry = f"\0{MARKER}={tag}\0".encode()
    found = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            if entry in b"\0" + Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
    return found


def namespaces_of_run(tag: str) -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(f"{tag}-")]


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def sweep(tag: str, within: float = 10) -> None:
    """Whatever of run `tag` is left: its processes killed (waiting until they are gone), its
    namespaces removed."""
    deadline = time.monotonic() + within
    while (left := pids_of_run(tag)) and time.monotonic() < deadline:
        _kill(left)
        time.sleep(0.05)
    for ns in namespaces_of_run(tag):
        _kill(pids_in_namespace(ns))
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _mounted(pid: int, path: Path) -> bool:
    try:
        mounts = Path(f"/proc/{pid}/mounts").read_text()
    except OSError:
        return False
    return any(line.split()[1] == str(path) for line in mounts.splitlines())

"""Docker Compose v2 driving the tests' podman through `podman system service`, with a thread
running the healthchecks podman leaves to systemd timers."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmd_service.dev.embedded import stop_processes
from support.stack import wait_ready
from tests.host_stack import run_compose
from tests.images import Podman

STOPPING = {"down", "stop", "kill", "rm", "restart"}


@dataclass
class Engine:
    podman: Podman
    socket: Path
    stopping: threading.Event = field(default_factory=threading.Event)
    # Held by a round of healthchecks and by a command that stops containers.
    round: threading.Lock = field(default_factory=threading.Lock)

    def run_healthchecks(self) -> None:
        while not self.stopping.wait(2.0):
            with self.round:
                listed = self.podman("ps", "--format", "{{.ID}}\t{{.Status}}", check=False)
                for line in listed.stdout.splitlines():
                    cid, _, status = line.partition("\t")
                    if "(" in status:  # "Up 5 seconds (starting)": it has a healthcheck
                        self.podman("healthcheck", "run", cid, check=False, timeout=60)

    def compose(
        self, directory: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        with self.round if STOPPING & set(args) else contextlib.nullcontext():
            return run_compose(
                directory, *args, env=env, timeout=timeout, docker_host=f"unix://{self.socket}"
            )

    def leftovers(self, project: str, ids: list[str]) -> dict[str, list[str]]:
        """What of the compose project is still there, processes naming its containers too."""
        label = f"label=com.docker.compose.project={project}"
        listings = {
            "containers": ("ps", "-a", "--filter", label, "--format", "{{.Names}}"),
            "volumes": ("volume", "ls", "--filter", label, "--format", "{{.Name}}"),
            "networks": ("network", "ls", "--filter", label, "--format", "{{.Name}}"),
            "pods": ("pod", "ls", "--format", "{{.Name}}"),
        }
        left = {kind: self.podman(*cmd).stdout.split() for kind, cmd in listings.items()}
        left["processes"] = []
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError):  # gone meanwhile, or not a process
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                if proc.name.isdigit() and any(cid[:12] in cmdline for cid in ids):
                    left["processes"].append(f"{proc.name}: {cmdline.replace(chr(0), ' ')[:120]}")
        return left


@contextlib.contextmanager
def engine(podman: Podman) -> Iterator[Engine]:
    path = podman.runroot / f"compose-{uuid.uuid4().hex[:8]}.sock"
    podman.runroot.mkdir(parents=True, exist_ok=True)
    log = podman.store / "system-service.log"
    with log.open("ab") as out:
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{path}"],
            env=podman.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    running = Engine(podman, path)
    checker = threading.Thread(target=running.run_healthchecks, daemon=True)
    try:
        wait_ready(service, lambda: _answers(path), "podman system service", log)
        checker.start()
        yield running
    finally:
        running.stopping.set()
        if checker.is_alive():
            checker.join(timeout=70)
        stop_processes([service], 15)
        path.unlink(missing_ok=True)


def _answers(path: Path) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
        return sock.recv(64).split(b"\r\n")[0].split()[1:2] == [b"200"]
    return False


def services(engine: Engine, directory: Path, args: list[str]) -> dict[str, list[dict[str, Any]]]:
    done = engine.compose(directory, *args, "ps", "-a", "--format", "json")
    assert done.returncode == 0, done.stderr
    found: dict[str, list[dict[str, Any]]] = {}
    for row in map(json.loads, filter(str.strip, done.stdout.splitlines())):
        found.setdefault(row["Service"], []).append(row)
    return found

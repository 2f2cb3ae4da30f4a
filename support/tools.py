"""The machine's programs the tests and runs need, with their Debian packages (stdlib only)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterable

# program → the Debian (12) package that provides it
PACKAGES: dict[str, str] = {
    "pgbouncer": "pgbouncer",
    "haproxy": "haproxy",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "redis-server": "redis-server",
    "podman": "podman",
    "buildah": "buildah",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "newuidmap": "uidmap",
    "netavark": "netavark",  # podman's networks, and their names resolved by aardvark-dns
    "aardvark-dns": "aardvark-dns",
    "iptables": "iptables",  # netavark's firewall rules, which Debian's netavark does not pull in
    "caddy": "caddy",
    "nginx": "nginx-light",
    "promtool": "prometheus",
    "chromium-headless-shell": "chromium-headless-shell",
    "openssl": "openssl",  # the SMTP tests' self-signed certificate
}
# What `python -m runs.cluster` runs: its hosts and their HAProxy, PgBouncer and Redis.
CLUSTER = ("ip", "nsenter", "unshare", "haproxy", "pgbouncer", "redis-server")
# Debian installs pgbouncer, haproxy, nginx, ip (podman's helpers: the last) where PATH may not.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/lib/podman")


def find(tool: str) -> str | None:
    """The program's path (PATH, then the sbin folders), or None."""
    if tool not in PACKAGES:
        raise KeyError(f"{tool}: not in support/tools.py's PACKAGES (which Debian package?)")
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def packages(tools: Iterable[str]) -> list[str]:
    """The Debian packages of those of `tools` that are not installed, each once, in order."""
    return list(dict.fromkeys(PACKAGES[tool] for tool in tools if find(tool) is None))


def missing(tools: Iterable[str]) -> str | None:
    tools = list(tools)
    absent, needed = [t for t in tools if find(t) is None], packages(tools)
    apt = f"install Debian's {', '.join(needed)} (apt-get install {' '.join(needed)})"
    return f"{', '.join(absent)} not found: {apt}" if absent else None


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m support.tools", description=__doc__.split("\n")[0])
    p.add_argument("tools", nargs="+", metavar="TOOL", choices=sorted(PACKAGES))
    p.add_argument(
        "--packages", action="store_true", help="print the missing ones' Debian packages"
    )
    args = p.parse_args()
    if args.packages:
        print(" ".join(packages(args.tools)))
    elif line := missing(args.tools):
        sys.exit(line)

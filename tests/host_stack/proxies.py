"""Debian's Caddy and nginx on loopback in front of the service, the shipped files verbatim."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from support import tools
from support.stack import stop, wait_ready
from tests.helpers import Captured, captured
from tests.host_stack import CHECKOUT, HERE

CADDY_SNIPPET = CHECKOUT / "deploy" / "caddy" / "pmd.Caddyfile"
NGINX_INCLUDE = CHECKOUT / "deploy" / "nginx" / "pmd.conf"
HOST_API_REPLY = "host api saw "


def _configured(program: str, directory: Path, name: str, text: str) -> tuple[str, Path]:
    binary = tools.find(program)
    assert binary is not None, tools.missing([program])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return binary, directory / name


@contextlib.contextmanager
def _serving(
    command: list[str], port: int, out: Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    with out.open("ab") as output:
        proc = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    try:
        wait_ready(proc, lambda: listens(port), command[0], log, within=20)
        yield
    finally:
        stop(proc)


def listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _filled(template: str, **values: object) -> str:
    text = (HERE / template).read_text()
    for name, value in values.items():
        text = text.replace(f"{{{{{name}}}}}", str(value))
    return text


@contextlib.contextmanager
def running_caddy(directory: Path, port: int, upstream: str) -> Iterator[str]:
    text = _filled("front.Caddyfile", SNIPPET=CADDY_SNIPPET, PORT=port, REPLY=HOST_API_REPLY)
    with caddy_serving(directory, text, port, {"PMD_UPSTREAM": upstream}):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def caddy_serving(
    directory: Path, config_text: str, port: int, extra_env: dict[str, str] | None = None
) -> Iterator[None]:
    binary, config = _configured("caddy", directory, "Caddyfile", config_text)
    log = directory / "caddy.log"
    homes = {"XDG_DATA_HOME": str(directory / "data"), "XDG_CONFIG_HOME": str(directory / "config")}
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(directory), **homes, **(extra_env or {})}
    command = [binary, "run", "--config", str(config), "--adapter", "caddyfile"]
    with _serving(command, port, log, log, env):
        yield


def caddy_adapt(directory: Path, config_text: str) -> dict[str, Any]:
    binary, config = _configured("caddy", directory, "Caddyfile", config_text)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(directory)}
    result = captured(
        [binary, "adapt", "--config", str(config), "--adapter", "caddyfile"], 30, env=env
    )
    assert result.returncode == 0, result.stderr
    adapted: dict[str, Any] = json.loads(result.stdout)
    return adapted


def _nginx(directory: Path, port: int, upstream: str) -> list[str]:
    values = {"UPSTREAM": upstream, "PORT": port, "INCLUDE": NGINX_INCLUDE, "REPLY": HOST_API_REPLY}
    text = _filled("front-nginx.conf", USER="user root;" if os.geteuid() == 0 else "", **values)
    binary, config = _configured("nginx", directory, "nginx.conf", text)
    (directory / "temp").mkdir(exist_ok=True)
    return [binary, "-p", str(directory), "-c", str(config)]


def nginx_test(directory: Path) -> Captured:
    return captured([*_nginx(directory, 1, "127.0.0.1:8080"), "-t"], 30)


@contextlib.contextmanager
def running_nginx(directory: Path, port: int, upstream: str) -> Iterator[str]:
    command = _nginx(directory, port, upstream)
    with _serving(command, port, directory / "nginx.out", directory / "error.log"):
        yield f"http://127.0.0.1:{port}"


async def check_reference(http: aiohttp.ClientSession, base: str) -> None:
    """The API reference works through a proxy that sends only /api/pmd/* to the service."""
    async with http.get(base + "/api/pmd/docs") as resp:
        assert resp.status == 200 and resp.content_type == "text/html", await resp.text()
        html = await resp.text()
        assert "script-src 'self' 'sha256-" in resp.headers.getall("Content-Security-Policy")[-1]
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.S)
    spec = re.findall(r'"url": "([^"]+)"', script)
    files = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert spec == ["/api/pmd/openapi.json"] and len(files) == 2, html
    assert all(f.startswith("/api/pmd/docs/vendor/") for f in files), files
    async with http.get(base + spec[0]) as resp:
        assert resp.status == 200
        assert "/api/pmd/bdr/{id}" in (await resp.json())["paths"]
    for url in files:
        async with http.get(base + url) as resp:
            assert resp.status == 200, url
            assert resp.content_type in {"text/css", "text/javascript", "application/javascript"}
            assert len(await resp.read()) > 100_000, url  # the viewer's file, not an error page

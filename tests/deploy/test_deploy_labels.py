"""The host's caddy-docker-proxy, as far as it can run here: the Caddyfile it generates from the
merged labels of the host's `web` service and the overlay's `pmd-server` (its label conversion,
ported in tests/host_stack/labels.py), adapted and run by Debian's Caddy. Caddy orders the
site's `handle` blocks itself; these tests check that /api/pmd/* comes before the host's /api/*
rule whatever order the labels are in, reaches the service with its path whole and streams SSE,
while the rest of /api/* still goes to the host's api with /api stripped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support import tools
from support.seeding import Factory
from support.sse import SSE, open_stream
from support.stack import free_port
from tests.deploy.conftest import StackOn
from tests.host_stack import COMPOSE_MISSING, compose_binary, merged, stack_dir
from tests.host_stack.labels import _tokens, caddyfile
from tests.host_stack.proxies import caddy_adapt, caddy_serving, check_reference
from tests.prerequisites import needs

pytestmark = needs(
    "deploy", tools.missing(["caddy"]) or (None if compose_binary() else COMPOSE_MISSING)
)
GLOBAL = "{\n\tadmin off\n\tauto_https off\n}\n"


@pytest.fixture
def labels(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    config = merged(stack_dir(tmp_path / "stack"))
    web: dict[str, str] = config["services"]["web"]["labels"]
    pmd: dict[str, str] = config["services"]["pmd-server"]["labels"]
    return web, pmd


def site_routes(adapted: dict[str, Any]) -> list[dict[str, Any]]:
    """The routes inside the one site's subroute, in the order Caddy runs them."""
    (server,) = adapted["apps"]["http"]["servers"].values()
    (site,) = server["routes"]
    (subroute,) = site["handle"]
    routes: list[dict[str, Any]] = subroute["routes"]
    return routes


def path_of(route: dict[str, Any]) -> list[str] | None:
    matchers = route.get("match")
    return matchers[0].get("path") if matchers else None


def handlers(route: dict[str, Any]) -> list[dict[str, Any]]:
    """Every handler inside a route, subroutes flattened."""
    found: list[dict[str, Any]] = []
    for handler in route["handle"]:
        found.append(handler)
        for inner in handler.get("routes", []):
            found.extend(handlers(inner))
    return found


def test_caddy_values_are_tokenised_as_caddy_does() -> None:
    assert _tokens("\"frame-ancestors 'self'\"") == ["frame-ancestors 'self'"]
    assert _tokens("@api  /api/*") == ["@api", "/api/*"]
    assert _tokens('a "b \\" c" `d e`') == ["a", 'b " c', "d e"]


@pytest.mark.parametrize("reverse", [False, True])
def test_api_pmd_goes_first_and_keeps_its_path(
    labels: tuple[dict[str, str], dict[str, str]], tmp_path: Path, reverse: bool
) -> None:
    web, pmd = labels
    containers = [pmd, web] if reverse else [web, pmd]  # the proxy's discovery order varies
    text = GLOBAL + caddyfile(containers, {3000: "127.0.0.1:3000", 8080: "127.0.0.1:8080"})
    routes = site_routes(caddy_adapt(tmp_path / "adapt", text))
    paths = [path_of(r) for r in routes]
    assert ["/api/pmd/*"] in paths and ["/api/*"] in paths, paths
    assert paths.index(["/api/pmd/*"]) < paths.index(["/api/*"]), text
    ours = handlers(routes[paths.index(["/api/pmd/*"])])
    proxies = [h for h in ours if h["handler"] == "reverse_proxy"]
    assert [p["upstreams"] for p in proxies] == [[{"dial": "127.0.0.1:8080"}]]
    assert proxies[0]["flush_interval"] == -1
    assert not any(h["handler"] == "rewrite" for h in ours)  # the path is not stripped
    hosts = handlers(routes[paths.index(["/api/*"])])
    assert any(h["handler"] == "rewrite" and h.get("strip_path_prefix") == "/api" for h in hosts)


async def test_the_generated_site_in_front_of_the_service(
    labels: tuple[dict[str, str], dict[str, str]],
    stack_on: StackOn,
    factory: Factory,
    tmp_path: Path,
) -> None:
    web, pmd = labels
    port, api_port, web_port = free_port(), free_port(), free_port()
    site = f"http://127.0.0.1:{port}"
    # The host's labels with this machine's addresses: the site, its api and its web app.
    web = {k: v.replace("makapix-prod-api:8000", f"127.0.0.1:{api_port}") for k, v in web.items()}
    web["caddy"] = pmd["caddy"] = site
    owner = await factory.user()
    post = await factory.post(owner)
    async with stack_on() as stack:
        upstreams = {3000: f"127.0.0.1:{web_port}", 8080: f"127.0.0.1:{stack.port}"}
        text = (
            GLOBAL
            + caddyfile([web, pmd], upstreams)
            + (
                f'http://127.0.0.1:{api_port} {{\n\trespond "host api saw {{path}}" 200\n}}\n'
                f'http://127.0.0.1:{web_port} {{\n\trespond "host web" 200\n}}\n'
            )
        )
        with caddy_serving(tmp_path / "caddy", text, port):
            async with aiohttp.ClientSession() as http:
                async with http.get(site + "/api/pmd/posts") as resp:
                    assert resp.status == 401
                    assert resp.content_type == "application/problem+json"
                async with http.get(site + "/api/pmd/posts", headers=owner.auth) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["total_count"] == 1
                    # The host's site-wide headers apply to the service's answers too.
                    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"
                async with http.get(site + "/api/auth/login") as resp:
                    assert await resp.text() == "host api saw /auth/login"
                async with http.get(site + "/u/x/posts") as resp:
                    assert await resp.text() == "host web"
                # The reference the start-up line names works on the host's site; /docs is
                # the host's web app's.
                await check_reference(http, site)
                async with http.get(site + "/docs") as resp:
                    assert await resp.text() == "host web"
                async with open_stream(http, site + SSE, headers=owner.auth) as stream:
                    await stream.opening()
                    body = {"post_ids": [post.id]}
                    async with http.post(site + "/api/pmd/bdr", json=body, headers=owner.auth) as r:
                        assert r.status == 202, await r.text()
                        item = await r.json()
                    (update,) = await stream.updates(1, within=30)
                    assert update.json()["id"] == item["id"]
                    assert not stream.resp.content.at_eof()

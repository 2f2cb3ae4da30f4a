from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from pmd_service.web.request_metrics import METRICS_ADDRESS
from support.seeding import Factory
from tests.helpers import request_bdr

Client = TestClient[Any, Any]


def _value(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{prefix} not in /metrics")


async def test_metrics_count_requests_by_route_and_status(client: Client, factory: Factory) -> None:
    user = await factory.user()
    post = await factory.post(user)
    await client.get("/api/pmd/posts", headers=user.auth)
    await client.get("/api/pmd/posts")  # 401
    await client.get(f"/api/pmd/bdr/{'0' * 8}-0000-4000-8000-000000000000", headers=user.auth)
    await request_bdr(client, user, [post.id])
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    ok = 'pmd_http_requests_total{method="GET",route="/api/pmd/posts",status="200"}'
    assert _value(text, ok) == 1
    assert _value(text, ok.replace("200", "401")) == 1
    # Route templates, never raw ids, as labels.
    assert (
        _value(text, 'pmd_http_requests_total{method="GET",route="/api/pmd/bdr/{id}",status="404"}')
        == 1
    )
    assert "pmd_http_request_duration_seconds_bucket" in text
    assert _value(text, "pmd_sse_subscribers ") == 0
    assert _value(text, "pmd_sse_listen_reconnects_total ") == 0
    assert _value(text, "pmd_arq_queue_depth ") == 1  # the BDR's job waits for a worker


async def test_metrics_on_an_internal_port_only(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    app = create_app(replace(settings, server_metrics_port=0))
    client = await aiohttp_client(app)
    user = await factory.user()
    await client.get("/api/pmd/posts", headers=user.auth)
    # Not on the public port any more (and not in the API's own description)...
    resp = await client.get("/metrics")
    assert resp.status == 404
    assert "/metrics" not in (await (await client.get("/openapi.json")).json())["paths"]
    # ...but on its own, where it counts the public port's requests.
    host, port = app[METRICS_ADDRESS][:2]
    async with aiohttp.ClientSession() as http, http.get(f"http://{host}:{port}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    ok = 'pmd_http_requests_total{method="GET",route="/api/pmd/posts",status="200"}'
    assert _value(text, ok) == 1
    assert _value(text, 'pmd_http_requests_total{method="GET",route="unmatched",status="404"}') == 1

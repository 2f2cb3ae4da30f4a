from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.factories import Factory
from tests.test_bdr_flow import request_bdr

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

"""Fuzzing from the contract: schemathesis against a live server, a few hundred cases.

The engine is `runs/fuzz.py` (whose bench run sends over a thousand to a real `server.py`).
Here it runs against the app on a real loopback port, on the test database seeded with a
moderator (the token's user) and another user, each with 200 artworks and a ready, a pending
and a failed BDR, so generated requests reach the handlers' happy paths as well as their
errors. Generation is derandomized: the same cases every run.

Checks on every response: no 5xx, a documented status, the documented content type and
headers, a body matching the response schema, and invalid input rejected with a 4xx.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from msgspec.structs import replace

from pmd_service.api.keys import OPENAPI_DOC
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from runs.fuzz import fuzz, seed_database

CASES = 400


# Generating the cases is CPU-bound: among eight busy workers on two cores it outlasts the default.
@pytest.mark.timeout(900)
async def test_generated_requests_never_break_the_contract(
    settings: Settings, pool: asyncpg.Pool, admin_database_url: str, redis_clean: None
) -> None:
    # A daily limit no run reaches, so BDR creation keeps exercising its happy path.
    settings = replace(settings, bdr_daily_limit=10_000, sse_max_per_user=1000)
    assert settings.database_url is not None
    # The seed writes host rows, as the host would: the admin's URL (the app runs as its role).
    seed = await seed_database(settings, admin_database_url)
    app = create_app(settings)
    operations = {f"{m.upper()} {p}" for p, ops in app[OPENAPI_DOC]["paths"].items() for m in ops}
    server = TestServer(app)
    await server.start_server()
    try:
        base_url = str(server.make_url("")).rstrip("/")
        # Blocking HTTP from a thread: the event loop stays free to serve it.
        report = await asyncio.to_thread(fuzz, base_url, seed, cases=CASES)
        health = await asyncio.to_thread(_status, f"{base_url}/readyz")
    finally:
        await server.close()
    summary = "\n".join(report.lines())
    print(summary)
    assert report.total >= CASES, summary
    assert report.server_errors == 0, summary
    assert not report.violations, summary
    assert health == 200
    # Every operation was reached, and the happy paths were too (not only 4xx).
    assert set(report.cases) == operations, summary
    for label, statuses in report.statuses.items():
        assert any(s < 300 for s in statuses), f"{label} never succeeded:\n{summary}"


def _status(url: str) -> int:
    import requests

    return requests.get(url, timeout=5).status_code


async def test_every_status_the_auth_rules_give_is_documented(settings: Settings) -> None:
    """Found by the fuzzer: an unknown `target_sqid` answers 404, which was undocumented on
    the endpoints without an id (and the download's Range answers were not described)."""
    doc = create_app(settings)[OPENAPI_DOC]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "security" in op:
                assert {"401", "403", "404"} <= set(op["responses"]), (method, path)
                assert "target_sqid" in {p["name"] for p in op["parameters"]}, (method, path)
    download = doc["paths"]["/api/pmd/bdr/{id}/download"]["get"]
    assert {"200", "206", "416"} <= set(download["responses"])
    assert {"Range", "If-Range"} <= {p["name"] for p in download["parameters"]}

"""The API reference at /docs in a real browser (Debian's Chromium, driven by Playwright): it
renders every operation of /openapi.json with the viewer the package ships, and neither asks
nor tries anything of another origin."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from tests.browser.page import Browser, Request, expect
from tests.page_stack import SCREENSHOTS

Client = TestClient[Any, Any]

# Every Content-Security-Policy violation, as the page sees it: a load the policy blocks is
# something the viewer tried, even when no byte left the browser.
WATCH_POLICY = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__violations.push(`${e.effectiveDirective} ${e.blockedURI}`);
});
"""


def _origin(url: str) -> str:
    """scheme://host:port; a `blob:` URL's is the origin that made it; `data:` has none."""
    parts = urlsplit(url.removeprefix("blob:"))
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


@pytest.mark.parametrize(
    ("path", "spec", "vendor"),
    [
        ("/docs", "/openapi.json", "/static/pmd/vendor"),
        # Beside the host, whose proxy sends only /api/pmd/* here: the same page, whole.
        ("/api/pmd/docs", "/api/pmd/openapi.json", "/api/pmd/docs/vendor"),
    ],
)
async def test_the_reference_shows_every_operation_and_asks_only_its_own_origin(
    client: Client, browser: Browser, path: str, spec: str, vendor: str
) -> None:
    doc = await (await client.get(spec)).json()
    operations = [op for ops in doc["paths"].values() for op in ops.values()]
    assert len(operations) >= 20
    url = str(client.make_url(path))
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    await context.add_init_script(WATCH_POLICY)
    page = await context.new_page()
    requests: list[Request] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await page.goto(url)
        await expect(page.locator(".opblock")).to_have_count(len(operations))
        for op in operations:
            # Swagger UI's id for an operation: its tag and its operationId.
            block = page.locator(f'[id="operations-{op["tags"][0]}-{op["operationId"]}"]')
            await expect(block.locator(".opblock-summary-description")).to_have_text(op["summary"])
        if SCREENSHOTS and path == "/docs":
            await page.screenshot(path=f"{SCREENSHOTS}/api-reference.png")

        # "Try it out" talks to this origin, as the policy allows: /healthz answers 200.
        healthz = page.locator('[id="operations-operations-healthz"]')
        await healthz.locator(".opblock-summary").click()
        await healthz.get_by_role("button", name="Try it out").click()
        await healthz.get_by_role("button", name="Execute").click()
        live = healthz.locator(".live-responses-table tbody .response-col_status")
        await expect(live).to_have_text("200")

        own = _origin(url)
        elsewhere = [r.url for r in requests if _origin(r.url) not in {own, "data:"}]
        assert elsewhere == [], elsewhere
        asked = {urlsplit(r.url).path for r in requests}
        assert {path, spec, "/healthz"} <= asked, asked
        assert {p for p in asked if "/vendor/" in p} == {
            f"{vendor}/swagger-ui-bundle.js",
            f"{vendor}/swagger-ui.css",
        }
        assert await page.evaluate("window.__violations") == []
        assert errors == []
    finally:
        await context.close()

"""Benchmark of the dashboard page in Debian's Chromium: `python -m bench.page`.

Not a test: it prints figures and exits 0. It seeds a fresh database with the posts benchmark's
user (10,000 artworks), starts `python server.py`, and opens `/u/{sqid}/posts` in headless
Chromium (Playwright, `/usr/bin/chromium`) several times, measuring inside the page (from
navigation start):

- first rows: the first 16 rows in the table,
- all loaded: the whole cursor walk done and rendered ("All 10,000 posts loaded."), and the walk
  alone (from its first request),

against the floor in the same run: the same cursor walk (64 posts, then 512 a request) fetched
and decoded by an aiohttp client in this process. Then, on the loaded page, the time of one
click (sort 10,000 posts by title, select all loaded, go to the last page), which the page
handles synchronously. Targets (ours; the issue set none): first rows ≤ 500 ms; all 10,000
loaded ≤ 1 s; a click ≤ 50 ms. The walk's ratio to the floor is reported, not targeted: on a
2-core machine the browser's own processes take CPU from the server and PostgreSQL while it
walks, which the Python client's walk does not.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import cli
from bench.posts import POSTS, seed
from pmd_service.core.public_ids import PublicIds
from support.stack import free_port, fresh_stack, service_env, start_server, stop

CHROMIUM = "/usr/bin/chromium"
FIRST_LIMIT, NEXT_LIMIT = 64, 512  # as pmd_service/web/static/posts.js asks
TARGET_FIRST_ROWS_MS = 500.0
TARGET_ALL_MS = 1000.0
TARGET_CLICK_MS = 50.0

# Marks, in ms since navigation start, when the table first shows rows and when all are loaded.
MARKS = """
(() => {
  window.__marks = {};
  const watch = () => {
    const rows = document.querySelectorAll("#posts-body tr").length;
    if (rows >= 16 && !window.__marks.first) window.__marks.first = performance.now();
    const text = document.getElementById("loading")?.textContent ?? "";
    if (text.startsWith("All ") && !window.__marks.all) window.__marks.all = performance.now();
  };
  new MutationObserver(watch).observe(document, { childList: true, subtree: true,
                                                  characterData: true });
})();
"""

CLICK = """
(selector) => {
  const t = performance.now();
  document.querySelector(selector).click();
  return performance.now() - t;
}
"""


async def api_walk(http: aiohttp.ClientSession, base: str, token: str) -> float:
    """The floor: the page's cursor walk, fetched and decoded, in ms."""
    started = time.perf_counter()
    params: dict[str, str | int] = {"limit": FIRST_LIMIT}
    seen = 0
    while True:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{base}/api/pmd/posts", params=params, headers=headers) as resp:
            page = await resp.json()
        seen += len(page["items"])
        if page["next_cursor"] is None:
            break
        params = {"limit": NEXT_LIMIT, "cursor": page["next_cursor"]}
    assert seen == POSTS, seen
    return (time.perf_counter() - started) * 1000


async def page_run(browser: Any, base: str, sqid: str, token: str) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    await context.add_init_script(MARKS)
    page = await context.new_page()
    await page.goto(f"{base}/u/{sqid}/posts#token={token}")
    await page.wait_for_function("() => window.__marks && window.__marks.all", timeout=60_000)
    marks = await page.evaluate("window.__marks")
    # When the walk began: the first posts request (the floor starts there too).
    marks["walk_start"] = await page.evaluate(
        """() => performance.getEntriesByType("resource")
                 .find((e) => e.name.includes("/api/pmd/posts")).startTime"""
    )
    clicks = {
        "sort_title_ms": await page.evaluate(CLICK, 'th[data-sort="title"] button'),
        "select_all_ms": await page.evaluate(CLICK, "#select-loaded"),
        "last_page_ms": await page.evaluate(CLICK, "#page-last"),
    }
    count = await page.text_content("#selected-count")
    assert count == f"{POSTS:,}", count  # as the page writes it (format.js)
    await context.close()
    return {
        "first_ms": marks["first"],
        "all_ms": marks["all"],
        "walk_ms": marks["all"] - marks["walk_start"],
        **clicks,
    }


async def bench(runs: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with fresh_stack() as settings:
        ids = PublicIds(settings.sqids_alphabet)
        owner, token = await seed(settings.database_url, ids, settings.jwt_secret_key)
        port = free_port()
        server = start_server(service_env(settings), port)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http, async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path=CHROMIUM,
                    headless=True,
                    args=["--no-sandbox", "--disable-background-networking"],
                )
                await api_walk(http, base, token)  # warm both sides once
                await page_run(browser, base, ids.encode(owner), token)
                floors, pages = [], []
                for _ in range(runs):  # interleaved, so machine noise hits both alike
                    floors.append(await api_walk(http, base, token))
                    pages.append(await page_run(browser, base, ids.encode(owner), token))
                await browser.close()
        finally:
            stop(server)
    floor = statistics.median(floors)
    figures = {"posts": POSTS, "runs": runs, "floor_ms": floor}
    figures |= {key: statistics.median(p[key] for p in pages) for key in pages[0]}
    figures["walk_ratio"] = figures["walk_ms"] / floor
    print(f"dashboard page, {POSTS:,} posts, median of {runs} loads: first rows "
          f"{figures['first_ms']:.0f} ms (target ≤ {TARGET_FIRST_ROWS_MS:.0f}), all loaded "
          f"{figures['all_ms']:.0f} ms (target ≤ {TARGET_ALL_MS:.0f}), of which the walk "
          f"{figures['walk_ms']:.0f} ms = {figures['walk_ratio']:.2f}× the floor's "
          f"{floor:.0f} ms; clicks: sort {figures['sort_title_ms']:.1f} ms, select all "
          f"{figures['select_all_ms']:.1f} ms, last page {figures['last_page_ms']:.1f} ms "
          f"(target ≤ {TARGET_CLICK_MS:.0f})")  # fmt: skip
    return figures


def main() -> int:
    parser = cli.parser("page", __doc__)
    parser.add_argument("--runs", type=int, default=7, help="page loads (and floor walks)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"no browser at {CHROMIUM} (apt-get install chromium): not measured")
        return 1
    cli.save(args.json, asyncio.run(bench(max(args.runs, 1))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of the dashboard page in Debian's Chromium: `python -m bench.page`.

The posts benchmark's user (10,000 artworks), `python server.py`, and `/u/{sqid}/posts` opened
in headless Chromium several times, timed inside the page from navigation start: the first 16
rows shown, and all loaded ("All 10,000 posts loaded."), with the cursor walk alone; against the
same walk fetched and decoded by an aiohttp client (the floor). Then one click each, handled
synchronously: sort by title, select all loaded, last page. Targets (ours): first rows ≤ 500 ms,
all loaded ≤ 1 s, a click ≤ 50 ms; the walk's ratio to the floor is reported only (on 2 cores
the browser takes CPU from the server and PostgreSQL, which the floor's client does not).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import cli
from bench.posts import POSTS, seed_listers
from support.stack import free_port, fresh_stack, service_env, start_server, stop

CHROMIUM = "/usr/bin/chromium"
FIRST_LIMIT, NEXT_LIMIT = 64, 512  # as pmd_service/web/static/posts.js asks

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
# When the walk began: the first posts request (the floor starts there too).
WALK_START = """() => performance.getEntriesByType("resource")
                       .find((e) => e.name.includes("/api/pmd/posts")).startTime"""


async def api_walk(http: aiohttp.ClientSession, base: str, token: str) -> float:
    """The floor: the page's cursor walk, fetched and decoded, in ms."""
    started = time.perf_counter()
    params: dict[str, str | int] = {"limit": FIRST_LIMIT}
    seen = 0
    while True:
        async with http.get(f"{base}/api/pmd/posts", params=params,
                            headers={"Authorization": f"Bearer {token}"}) as resp:  # fmt: skip
            page = await resp.json()
        seen += len(page["items"])
        if page["next_cursor"] is None:
            break
        params = {"limit": NEXT_LIMIT, "cursor": page["next_cursor"]}
    assert seen == POSTS, seen
    return (time.perf_counter() - started) * 1000


async def page_run(browser: Any, url: str) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    await context.add_init_script(MARKS)
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_function("() => window.__marks && window.__marks.all", timeout=60_000)
    marks = await page.evaluate("window.__marks")
    walk_start = await page.evaluate(WALK_START)
    figures = {"first_ms": marks["first"], "all_ms": marks["all"],
               "walk_ms": marks["all"] - walk_start}  # fmt: skip
    for key, selector in (
        ("sort_title_ms", 'th[data-sort="title"] button'),
        ("select_all_ms", "#select-loaded"),
        ("last_page_ms", "#page-last"),
    ):
        figures[key] = await page.evaluate(CLICK, selector)  # fmt: skip
    count = await page.text_content("#selected-count")
    assert count == f"{POSTS:,}", count  # as the page writes it (format.js)
    await context.close()
    return figures


async def bench(runs: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with fresh_stack() as settings:
        user = (await seed_listers(settings, {"owner": (POSTS, True)}))["owner"]
        port = free_port()
        server = start_server(service_env(settings), port)
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/u/{user.sqid}/posts#token={user.token}"
        try:
            async with aiohttp.ClientSession() as http, async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path=CHROMIUM, headless=True,
                    args=["--no-sandbox", "--disable-background-networking"],
                )  # fmt: skip
                await api_walk(http, base, user.token)  # warm both sides once
                await page_run(browser, url)
                floors, pages = [], []
                for _ in range(runs):  # interleaved, so machine noise hits both alike
                    floors.append(await api_walk(http, base, user.token))
                    pages.append(await page_run(browser, url))
                await browser.close()
        finally:
            stop(server)
    f: dict[str, Any] = {"posts": POSTS, "runs": runs, "floor_ms": statistics.median(floors)}
    f |= {key: statistics.median(p[key] for p in pages) for key in pages[0]}
    f["walk_ratio"] = f["walk_ms"] / f["floor_ms"]
    cli.show(f"dashboard page, medians of {runs} loads", f)
    return f


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

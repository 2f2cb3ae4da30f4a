"""The host's own page logic (tests/host_page.html) in Debian's Chromium against real `server.py`
and `arq` worker processes, with the machine loaded: a new download request must show one card.

The host's page prepends a card when the reply to its POST is parsed, and replaces cards by id
on `bdr_update`: a stream event handled before the reply adds a second card, which never
changes. The browser reads the two connections independently, so the service holding back a
request's first event (`SSE_FIRST_EVENT_HOLD_MS`) is what keeps the event behind the reply.

Knobs, for reproducing the race by hand (not for CI): `PMD_HOST_PAGE_RUNS` (20),
`PMD_HOST_PAGE_HOLD_MS` (the server's hold; 0 shows the duplicates this test catches) and
`PMD_HOST_PAGE_RENDER_MS` (300: how long the page's re-render keeps its main thread busy).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.seeding import Factory
from support.stack import free_port, log_tail
from tests.browser.page import Browser, PlaywrightTimeout, Stack
from tests.page_stack import CHROMIUM_ARGS, page_html, serving_page

RUNS = int(os.environ.get("PMD_HOST_PAGE_RUNS", "20"))
HOLD_MS = os.environ.get("PMD_HOST_PAGE_HOLD_MS")  # unset: the service's default
# The page's re-render after the click (React redrawing the post table), in ms of busy thread.
RENDER_MS = float(os.environ.get("PMD_HOST_PAGE_RENDER_MS", "300"))
ARGS = [*CHROMIUM_ARGS, "--disable-gpu", "--disable-quic"]


@pytest.fixture
def browser_args() -> list[str]:
    return ARGS


@pytest.fixture
def page_port() -> int:
    return free_port()


@pytest.fixture
def stack_env(page_port: int) -> dict[str, str]:
    env = {"CORS_ORIGINS": f"http://127.0.0.1:{page_port}", "BDR_DAILY_LIMIT": "10000"}
    if HOLD_MS is not None:
        env["SSE_FIRST_EVENT_HOLD_MS"] = HOLD_MS
    return env


@pytest.fixture
def cpu_burners() -> Iterator[None]:
    """One busy process per core (up to 8) beside the browser, server and worker, as a build
    running beside them would be."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(min(os.cpu_count() or 2, 8))
    ]
    try:
        yield
    finally:
        for proc in burners:
            proc.kill()
        for proc in burners:
            proc.wait()


async def test_the_host_page_shows_one_card_per_request_on_a_loaded_machine(
    browser: Browser, stack: Stack, factory: Factory, page_port: int, cpu_burners: None
) -> None:
    owner, posts = await factory.owner_and_posts(2)
    started = time.monotonic()
    async with serving_page(page_html(stack.base, owner.token, RENDER_MS), page_port) as url:
        page = await browser.new_page()
        await page.goto(url)
        await page.wait_for_function("harness.connected === 1", timeout=30_000)
        ids: list[str] = []
        duplicated: list[str] = []
        for n in range(RUNS):
            bdr_id = await page.evaluate("ids => harness.request(ids)", [posts[n % 2].id])
            assert bdr_id, await page.evaluate("harness.error")
            ids.append(bdr_id)
            # Until the request is ready on the page: its stream events have all been handled.
            try:
                await page.wait_for_function(
                    "id => harness.cards().some(c => c.id === id && c.status === 'ready')",
                    arg=bdr_id,
                    timeout=60_000,
                )
            except PlaywrightTimeout:
                state = await page.evaluate("[harness.cards(), harness.events, harness.connected]")
                worker_log = log_tail(stack.directory / "worker.log")
                raise AssertionError(f"run {n + 1} never ready: {state}{worker_log}") from None
            cards = await page.evaluate("id => harness.cards().filter(c => c.id === id)", bdr_id)
            if len(cards) != 1:
                duplicated.append(f"run {n + 1}: {cards}")
        times: dict[str, Any] = await page.evaluate("({r: harness.replies, e: harness.events})")
        final = await page.evaluate("harness.cards()")
    # How long after the reply was handled each request's first event was (negative: before).
    leads = [times["e"][i][0][0] - times["r"][i] for i in ids]
    print(
        f"\n{RUNS} requests in {time.monotonic() - started:.1f} s, hold "
        f"{HOLD_MS or 'default'} ms, render {RENDER_MS:g} ms; first event after the reply, ms: min {min(leads):.1f} "
        f"median {statistics.median(leads):.1f} max {max(leads):.1f}; duplicates "
        f"{len(duplicated)}"
    )
    assert not duplicated, duplicated
    assert sorted(c["id"] for c in final) == sorted(ids)
    assert {c["status"] for c in final} == {"ready"}

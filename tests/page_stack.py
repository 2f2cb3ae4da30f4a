"""The browser tests' stack: the server and worker as run in production, and Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import random
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pmd_service.core.settings import SERVER_URLS, Settings, mark_dev_servers
from pmd_service.dev.demo import pixel_art
from support import tools
from support.seeding import Factory, UserRow
from support.stack import free_port, service_env, start_server, stop
from tests.helpers import CHECKOUT
from tests.procs import ARQ_WORKER

if TYPE_CHECKING:  # Playwright may be missing here: the page tests then skip
    from playwright.async_api import Browser, Page, Playwright, ViewportSize

# Debian's headless shell, the build Playwright itself runs headless: far lighter than the full
# browser's headless mode, on a machine where the page tests share two cores with the suite.
CHROMIUM = Path(os.environ.get("PMD_CHROMIUM", "/usr/bin/chromium-headless-shell"))
SCREENSHOTS = os.environ.get("PMD_SCREENSHOTS")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
]
WIDE: ViewportSize = {"width": 1440, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 812}


def browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (make test installs it)"
    if CHROMIUM.exists():
        return None
    if "PMD_CHROMIUM" in os.environ:
        return f"no browser at {CHROMIUM} (PMD_CHROMIUM)"
    return tools.missing(["chromium-headless-shell"]) or f"no browser at {CHROMIUM}"


@dataclass
class Stack:
    settings: Settings
    directory: Path
    port: int
    server: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        # Dev mode serves the vault's artwork files, for the thumbnails.
        extra = {"PORT": str(self.port), "PMD_DEV": "true", "LOG_FORMAT": "text", **self.extra_env}
        env = service_env(self.settings, self.directory, **extra)
        # The test's own servers: dev mode runs only on servers a dev stack marked as its own.
        mark_dev_servers(self.directory, *(env[name] for name in SERVER_URLS if env.get(name)))
        return env

    async def start_server(self) -> None:
        with (self.directory / "server.log").open("ab") as log:
            self.server = await asyncio.to_thread(start_server, self.env(), self.port, log)

    async def stop_server(self) -> None:
        assert self.server is not None
        await asyncio.to_thread(stop, self.server)

    def start_worker(self) -> None:
        with (self.directory / "worker.log").open("ab") as log:
            self.worker = subprocess.Popen(
                ARQ_WORKER, cwd=CHECKOUT, env=self.env(), stdout=log, stderr=log
            )

    def stop(self) -> None:
        stop(*(p for p in (self.server, self.worker) if p is not None))


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, directory: Path, port: int, **env: str
) -> AsyncIterator[Stack]:
    stack = Stack(settings, directory, port, extra_env=env)
    try:
        stack.start_worker()
        await stack.start_server()
        yield stack
    finally:
        stack.stop()


async def artist(factory: Factory, count: int) -> tuple[UserRow, list[int]]:
    """A new user and `count` artworks of theirs with real files: their ids."""
    owner = await factory.user()
    rng = random.Random(7)
    ids: list[int] = []
    titles = ["Sunset", "Knight", "Slime", "Café", "Cat nap", "Mushroom", "Rocket", "Dragon"]
    formats = ["png", "png", "gif", "webp"]
    for n in range(count):
        fmt = formats[n % len(formats)]
        post = await factory.post(
            owner,
            title=f"{titles[n % len(titles)]} #{n + 1}",
            fmt=fmt,
            data=pixel_art(rng, 8, 2, fmt),
            view_count=rng.randrange(2000),
        )
        await factory.pool.execute(
            "UPDATE posts SET art_url = $2, created_at = now() - make_interval(mins => $3) "
            "WHERE id = $1",
            post.id,
            f"/vault/{post.shard}/{post.storage_key}.{fmt}",
            n,
        )
        if n % 5 == 0:
            await factory.comment(post, owner, f"Comment on #{n + 1}")
            await factory.reaction(post, owner, "❤️")
        ids.append(post.id)
    return owner, ids


async def broken_rows(page: Page, selector: str) -> list[str]:
    """What wrapped among the rows `selector` matches: items on another line, broken texts."""
    return await _found(
        page, Path(__file__).with_name("broken_rows.js").read_text("utf-8"), selector
    )


async def clipped(page: Page, selector: str) -> list[str]:
    """What a person cannot see whole among the elements `selector` matches."""
    return await _found(page, Path(__file__).with_name("clipped.js").read_text("utf-8"), selector)


async def outside_width(page: Page, selector: str, width: int) -> list[str]:
    script = """([selector, width]) => [...document.querySelectorAll(selector)]
        .filter((el) => el.getClientRects().length > 0)
        .map((el) => [el, el.getBoundingClientRect()])
        .filter(([, r]) => r.left < 0 || r.right > width)
        .map(([el, r]) => `${el.id || el.textContent.trim()}: ${r.left}..${r.right}`)"""
    return await _found(page, script, [selector, width])


async def _found(page: Page, script: str, arg: Any) -> list[str]:
    found: list[str] = await page.evaluate(script, arg)
    return found


class Watch:
    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.requests: list[Any] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r))
        self.page = page

    async def mark(self) -> None:
        """A flag in the document: still there means the page was never reloaded."""
        await self.page.evaluate("window.__sameDocument = true")

    async def same_document(self) -> bool:
        return bool(await self.page.evaluate("window.__sameDocument === true"))

    def urls(self, path: str) -> list[str]:
        return [r.url for r in self.requests if path in r.url]

    def posts_to(self, path: str) -> list[Any]:
        return [
            r.post_data_json
            for r in self.requests
            if r.method == "POST" and urlsplit(r.url).path == path
        ]


async def open_page(
    browser: Browser,
    stack: Stack,
    user: UserRow,
    *,
    token: str | None = None,
    query: str = "",
    viewport: ViewportSize = WIDE,
    color_scheme: Any = "light",
) -> tuple[Page, Watch]:
    """`user`'s dashboard page in a new browser context, signed in with `token` or theirs."""
    context = await browser.new_context(
        viewport=viewport, color_scheme=color_scheme, accept_downloads=True
    )
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.base)
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(f"{stack.base}/u/{user.sqid}/posts{query}#token={token or user.token}")
    return page, watch


async def artist_page(
    browser: Browser, stack: Stack, factory: Factory, n: int, *, moderated: bool = False
) -> tuple[UserRow, list[int], Page, Watch]:
    """A new user with `n` artworks and their page open (`moderated`: by a moderator)."""
    from playwright.async_api import expect

    owner, ids = await artist(factory, n)
    token = (await factory.user(roles=["moderator"])).token if moderated else None
    page, watch = await open_page(browser, stack, owner, token=token)
    if moderated:
        await expect(page.locator("#loading")).to_have_text(f"All {n} posts loaded.")
    else:
        await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    return owner, ids, page, watch


async def loaded_page(
    browser: Browser, stack: Stack, factory: Factory, n: int, **kw: Any
) -> tuple[UserRow, list[int], Page, Watch]:
    """A new user's `n` artworks (ids) and their page (`kw`: open_page's) with every post loaded."""
    from playwright.async_api import expect

    owner, ids = await artist(factory, n)
    page, watch = await open_page(browser, stack, owner, **kw)
    await expect(page.locator("#loading")).to_have_text(f"All {n} posts loaded.")
    return owner, ids, page, watch


async def shot(page: Page, name: str) -> None:
    """Saved for the README when PMD_SCREENSHOTS names a folder."""
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


async def api(stack: Stack, user: UserRow, method: str, path: str, body: Any = None) -> Any:
    """A call as another tab makes it; its JSON."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, stack.base + path, json=body, headers=user.auth) as r,
    ):
        assert r.status < 300, await r.text()
        return await r.json()


def page_html(api_base: str, token: str, render_ms: float) -> str:
    """The page calling `api_base` with `token`; `render_ms`: its re-render after the click."""
    values = {"__API__": api_base, "__TOKEN__": token, "__RENDER_MS__": render_ms}
    html = Path(__file__).with_name("host_page.html").read_text("utf-8")
    for name, value in values.items():
        html = html.replace(name, json.dumps(value))
    return html


@contextlib.asynccontextmanager
async def serving_page(html: str, port: int) -> AsyncIterator[str]:
    async def index(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    async with TestServer(app, host="127.0.0.1", port=port) as server:
        yield str(server.make_url("/"))


# The page tests' fixtures; a module overrides `stack_env` and `browser_args`.


@pytest.fixture
def browser_args() -> list[str]:
    return CHROMIUM_ARGS


class Browsers:
    """One Playwright driver, and one Chromium for each set of arguments, kept for the run."""

    def __init__(self, playwright: Playwright) -> None:
        self.playwright = playwright
        self.launched: dict[tuple[str, ...], Browser] = {}

    async def with_args(self, args: list[str]) -> Browser:
        key = tuple(args)
        browser = self.launched.get(key)
        if browser is None or not browser.is_connected():
            browser = await self.playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=args
            )
            self.launched[key] = browser
        return browser


@pytest.fixture(scope="session")
async def browsers() -> AsyncIterator[Browsers]:
    from playwright.async_api import async_playwright, expect

    # A shared 2-core machine: generous, and never a timing assertion.
    expect.set_options(timeout=30_000)
    async with async_playwright() as p:
        yield Browsers(p)


@pytest.fixture
async def browser(browsers: Browsers, browser_args: list[str]) -> AsyncIterator[Browser]:
    """The run's Chromium: each test has contexts of its own, closed after it."""
    browser = await browsers.with_args(browser_args)
    yield browser
    for context in browser.contexts:
        await context.close()


@pytest.fixture
def stack_env() -> dict[str, str]:
    return {}


@pytest.fixture
async def stack(
    settings: Settings,
    pool: asyncpg.Pool,
    redis_clean: None,
    tmp_path: Path,
    stack_env: dict[str, str],
) -> AsyncIterator[Stack]:
    async with running_stack(settings, tmp_path, free_port(), **stack_env) as stack:
        yield stack

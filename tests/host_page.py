"""The host's own dashboard page logic (tests/host_page.html), served from an origin of its own."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

PAGE = Path(__file__).with_name("host_page.html")


def page_html(api_base: str, token: str, render_ms: float) -> str:
    """The page calling `api_base` with `token`; `render_ms`: its re-render after the click."""
    values = {"__API__": api_base, "__TOKEN__": token, "__RENDER_MS__": render_ms}
    html = PAGE.read_text("utf-8")
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

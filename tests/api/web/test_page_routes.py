"""How the app serves the dashboard page, its files, the API reference (/docs) and its vendored
viewer and, in dev mode only, the demo shortcut and the vault's artwork files (never a ZIP)."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient
from yarl import URL

from pmd_service.core.settings import Settings
from pmd_service.core.visibility import RESTORE_WINDOW_DAYS
from pmd_service.dev.demo_user import demo_user_key
from pmd_service.host.eligibility import MAX_BATCH
from pmd_service.web import filter_keys
from pmd_service.web.app import create_app
from pmd_service.web.pages import STATIC_DIR
from pmd_service.web.reference import SWAGGER_UI_VERSION
from support.seeding import Factory
from tests.helpers import assert_problem

Client = TestClient[Any, Any]


async def dev_client(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    return await aiohttp_client(create_app(replace(settings, dev_mode=True)))


async def test_the_page_is_served_for_any_user_link_with_a_strict_policy(client: Client) -> None:
    resp = await client.get("/u/Uk/posts?bdr=0b3e5f1c-2b65-4a34-9d1e-1f4a2c3d4e5f")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert '<script type="module" src="/static/pmd/app.js">' in html
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"


async def test_a_link_that_cannot_hold_a_user_id_is_a_404_problem(client: Client) -> None:
    for path in ("/u/not-a-sqid!/posts", "/u/" + "a" * 17 + "/posts"):
        await assert_problem(await client.get(path), 404)


async def test_the_page_modules_are_served_as_javascript(client: Client) -> None:
    names = sorted(path.name for path in STATIC_DIR.glob("*.js"))
    assert {"app.js", "downloads.js", "exports.js"} <= set(names)
    for name in names:
        resp = await client.get(f"/static/pmd/{name}")
        assert resp.status == 200, name
        assert resp.content_type in {"text/javascript", "application/javascript"}, name
    css = await client.get("/static/pmd/styles.css")
    assert css.status == 200 and css.content_type == "text/css"
    # A client's own `..` would be collapsed before sending; these reach the server as written.
    base = client.make_url("/")
    for raw in (
        "static/pmd/%2e%2e/pages.py",
        "static/pmd/..%2Fpages.py",
        "static/pmd/%2E%2E%2F__init__.py",
    ):
        resp = await client.session.get(URL(f"{base}{raw}", encoded=True))
        assert resp.status == 404, raw
        assert b"import" not in await resp.read(), raw
    assert (await client.get("/static/pmd/nothing.js")).status == 404


async def test_outside_dev_mode_there_is_no_root_redirect_and_no_vault(
    client: Client, factory: Factory
) -> None:
    owner = await factory.user(handle="demo")
    post = await factory.post(owner)
    await assert_problem(await client.get("/", allow_redirects=False), 404)
    resp = await client.get(f"/vault/{post.shard}/{post.storage_key}.png")
    await assert_problem(resp, 404)


async def test_dev_root_opens_the_demo_users_page(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    client = await dev_client(aiohttp_client, settings)
    resp = await client.get("/", allow_redirects=False)
    await assert_problem(resp, 404)  # no demo user yet
    assert "make run" in (await resp.json())["detail"]
    # A real account named `demo` is not the demo's: its page is never opened signed out.
    await factory.user(handle="demo")
    await assert_problem(await client.get("/", allow_redirects=False), 404)
    await factory.pool.execute("DELETE FROM users WHERE handle = 'demo'")
    demo = await factory.user(handle="demo", user_key=demo_user_key("demo"))
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == f"/u/{demo.sqid}/posts"


async def test_dev_vault_serves_artwork_files_and_never_a_zip(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    client = await dev_client(aiohttp_client, settings)
    owner = await factory.user()
    post = await factory.post(owner, data=b"\x89PNG-bytes")
    resp = await client.get(f"/vault/{post.shard}/{post.storage_key}.png")
    assert resp.status == 200
    assert await resp.read() == b"\x89PNG-bytes"

    # A ZIP in the BDR folder (a folder of the vault by default) is not reachable, whatever
    # the name is made to look like.
    user_dir = settings.zip_path / "u1"
    user_dir.mkdir(parents=True)
    (user_dir / f"{post.storage_key}.png").write_bytes(b"PK-not-for-you")
    (settings.zip_path / f"{post.storage_key}.png").write_bytes(b"PK-not-for-you")
    for path in (
        f"/vault/bdr/{post.storage_key}.png",
        f"/vault/{post.shard}/{post.storage_key}.zip",
        f"/vault/{post.shard}/..%2Fbdr%2F{post.storage_key}.png",
        f"/vault/..%2Fbdr/{post.storage_key}.png",
        f"/vault/{post.shard}/{post.storage_key}.gif",  # no such file
        f"/vault/{post.shard}/not-a-uuid.png",
    ):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert b"not-for-you" not in await resp.read()


async def test_licenses_are_listed_for_the_license_menu(client: Client, factory: Factory) -> None:
    owner = await factory.user()
    await factory.license("CC0-1.0")
    await factory.license("CC-BY-4.0")
    await assert_problem(await client.get("/api/pmd/licenses"), 401)
    resp = await client.get("/api/pmd/licenses", headers=owner.auth)
    assert resp.status == 200
    items = (await resp.json())["items"]
    assert [i["identifier"] for i in items] == ["CC-BY-4.0", "CC0-1.0"]
    assert set(items[0]) == {"id", "identifier", "title"}


def test_the_pages_rules_are_the_services() -> None:
    """The page states two of the service's rules for the browser; they must not drift."""

    def constant(file: str, name: str) -> int:
        match = re.search(rf"export const {name} = (\d+);", (STATIC_DIR / file).read_text())
        assert match is not None, f"{name} not found in {file}"
        return int(match[1])

    assert constant("format.js", "RESTORE_WINDOW_DAYS") == RESTORE_WINDOW_DAYS
    assert constant("bulk.js", "MAX_BATCH") == MAX_BATCH


def test_the_pages_filter_keys_are_the_services() -> None:
    """The page reads the filter's keys from a module generated from FilterKeys: changing
    FilterKeys without regenerating it fails here."""
    assert filter_keys.MODULE.read_text("utf-8") == filter_keys.module_text(), (
        "run: python -m pmd_service.web.filter_keys"
    )
    assert filter_keys.main(["--check"]) == 0


VENDOR = STATIC_DIR / "vendor"


@pytest.mark.parametrize(
    ("path", "spec", "vendor"),
    [
        ("/docs", "/openapi.json", "/static/pmd/vendor"),
        # Under /api/pmd/, the one path a site's proxy sends here: page, document and files.
        ("/api/pmd/docs", "/api/pmd/openapi.json", "/api/pmd/docs/vendor"),
    ],
)
async def test_the_reference_page_runs_only_this_origins_scripts(
    client: Client, path: str, spec: str, vendor: str
) -> None:
    resp = await client.get(path)
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    policy = dict(
        part.strip().split(" ", 1) for part in resp.headers["Content-Security-Policy"].split(";")
    )
    # The page's one inline script is allowed by its digest, and nothing else inline is.
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["style-src"] == "'self'"
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in resp.headers["Content-Security-Policy"]
    assert f'"url": "{spec}"' in script and '"validatorUrl": null' in script
    assert (await client.get(spec)).status == 200
    # Every file it loads is this origin's, and served.
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(sources) == [
        f"{vendor}/swagger-ui-bundle.js?v={SWAGGER_UI_VERSION}",
        f"{vendor}/swagger-ui.css?v={SWAGGER_UI_VERSION}",
    ]
    for source in sources:
        served = await client.get(source)
        assert served.status == 200, source
        assert served.content_type in {"text/css", "text/javascript", "application/javascript"}
    head = await client.head(path)
    assert head.status == 200 and head.headers["Content-Security-Policy"]


def test_the_vendored_viewer_is_the_pinned_release() -> None:
    """The files are the ones SHA256SUMS names, of the version the page asks for and the
    README names, with their license beside them."""
    sums = (VENDOR / "SHA256SUMS").read_text().splitlines()
    assert [line.split()[1] for line in sums] == ["swagger-ui-bundle.js", "swagger-ui.css"]
    for line in sums:
        digest, name = line.split()
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    readme = (VENDOR / "README.md").read_text()
    assert readme.startswith(f"# Vendored: Swagger UI {SWAGGER_UI_VERSION}\n")
    assert f"`swagger-ui-dist` {SWAGGER_UI_VERSION}" in readme
    assert f'"{SWAGGER_UI_VERSION}"' in (VENDOR / "swagger-ui-bundle.js").read_text()
    assert "Apache License" in (VENDOR / "LICENSE").read_text()
    assert (VENDOR / "NOTICE").read_text().startswith("swagger-ui")

"""The OpenAPI document against the server's real answers, both ways: every status, media type
and header the server sends is declared for its operation (header values as the declared
pattern says), and every media type and header declared for a status it answered is one it
sent.

Two sets of answers: a ready download asked with Range and every condition, in each way of
sending the ZIP (the local folder, a bucket proxied or redirected to); and every operation of
the document while PostgreSQL is unreachable (its port refuses, its connections are cut).
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seaweed import Seaweed
from support.seeding import Factory, UserRow
from support.sse import SSE
from tests.helpers import (
    DatabaseRelay,
    direct,
    fetch_item,
    on_port,
    request_bdr,
    requested,
    run_worker,
)
from tests.unit.test_error_codes import declared_codes

Client = TestClient[Any, Any]
DOWNLOAD = "/api/pmd/bdr/{id}/download"


@dataclass(frozen=True)
class Answer:
    """One real answer, filed under the document's operation (a HEAD under its GET)."""

    method: str
    path: str
    status: int
    headers: dict[str, str]  # names in lower case
    code: str | None = None  # a problem's reason (`details.reason`)

    @classmethod
    def of(cls, method: str, path: str, resp: ClientResponse, body: bytes = b"") -> Answer:
        operation = "get" if method == "HEAD" else method.lower()
        headers = {name.lower(): value for name, value in resp.headers.items()}
        problem = resp.content_type == "application/problem+json" and body
        code = msgspec.json.decode(body)["details"]["reason"] if problem else None
        return cls(operation, path, resp.status, headers, code)

    @property
    def media(self) -> str | None:
        value = self.headers.get("content-type")
        return value.partition(";")[0].strip() if value is not None else None


def _declared(doc: dict[str, Any], answer: Answer) -> dict[str, Any] | None:
    found: dict[str, Any] | None = doc["paths"][answer.path][answer.method]["responses"].get(
        str(answer.status)
    )
    return found


def _headers_of(declared: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name.lower(): header for name, header in declared.get("headers", {}).items()}


def undeclared(doc: dict[str, Any], answers: Iterable[Answer], everywhere: set[str]) -> list[str]:
    """What the answers show that the document does not say: a status, a media type, a header
    (beyond `everywhere`: those of any answer) or a header value its pattern refuses."""
    found = []
    for a in answers:
        where = f"{a.method.upper()} {a.path} {a.status}"
        declared = _declared(doc, a)
        if declared is None:
            found.append(f"{where}: status not declared")
            continue
        content = declared.get("content", {})
        if a.media is not None and a.media not in content:
            found.append(f"{where}: sends {a.media}, declares {sorted(content)}")
        if a.media is None and content:
            found.append(f"{where}: sends no body, declares {sorted(content)}")
        headers = _headers_of(declared)
        for name in sorted(set(a.headers) - everywhere - {"content-type"}):
            if name not in headers:
                found.append(f"{where}: sends {name}, not declared")
                continue
            pattern = headers[name]["schema"].get("pattern")
            if pattern is not None and re.search(pattern, a.headers[name]) is None:
                found.append(f"{where}: {name}: {a.headers[name]!r} is not {pattern}")
    return found


def undeclared_codes(doc: dict[str, Any], answers: Iterable[Answer]) -> list[str]:
    """The problems whose code the document does not declare for their operation and status."""
    declared = declared_codes(doc)
    return [
        f"{a.method.upper()} {a.path} {a.status}: {a.code}"
        for a in answers
        if a.code is not None and a.code not in declared.get((a.method, a.path, a.status), set())
    ]


def never_sent(doc: dict[str, Any], answers: Iterable[Answer]) -> list[str]:
    """What the document declares for a status the server answered, that none of its answers
    of that status sent: a media type, a header."""
    seen: dict[tuple[str, str, int], list[Answer]] = defaultdict(list)
    for a in answers:
        seen[(a.method, a.path, a.status)].append(a)
    found = []
    for (method, path, status), group in seen.items():
        declared = _declared(doc, group[0])
        if declared is None:
            continue  # undeclared() reports it
        where = f"{method.upper()} {path} {status}"
        medias = {a.media for a in group}
        for media in sorted(set(declared.get("content", {})) - medias):
            found.append(f"{where}: declares {media}, never sent")
        names = {name for a in group for name in a.headers}
        for name in sorted(set(_headers_of(declared)) - names):
            found.append(f"{where}: declares {name}, never sent")
    return found


async def _document(client: Client) -> tuple[dict[str, Any], set[str]]:
    """The document, and the headers of any answer (/healthz's: Date, Server, the request id,
    the body's type and length)."""
    doc: dict[str, Any] = await (await client.get("/openapi.json")).json()
    healthz = await client.get("/healthz")
    return doc, {name.lower() for name in healthz.headers}


# --- a download asked with Range and conditions ------------------------------------------------


def _download_cases(etag: str, modified: str, size: int) -> list[tuple[str, dict[str, str], int]]:
    """(what, request headers, status the folder and proxy modes answer)."""
    return [
        ("plain", {}, 200),
        ("one range", {"Range": "bytes=0-9"}, 206),
        ("from an offset", {"Range": "bytes=5-"}, 206),
        ("the last bytes", {"Range": "bytes=-5"}, 206),
        ("past the end, clipped", {"Range": f"bytes=0-{size + 100}"}, 206),
        # Several ranges: the whole ZIP, never multipart/byteranges.
        ("two ranges", {"Range": "bytes=0-1,5-6"}, 200),
        ("an invalid range", {"Range": "bytes=9-2"}, 200),
        ("another unit", {"Range": "items=0-1"}, 200),
        ("from the end", {"Range": f"bytes={size}-"}, 416),
        ("the last 0 bytes", {"Range": "bytes=-0"}, 416),
        ("If-Range: its ETag", {"Range": "bytes=0-9", "If-Range": etag}, 206),
        ("If-Range: its date", {"Range": "bytes=0-9", "If-Range": modified}, 206),
        ("If-Range: another", {"Range": "bytes=0-9", "If-Range": '"other"'}, 200),
        ("If-Match: its ETag", {"If-Match": etag, "Range": "bytes=0-9"}, 206),
        ("If-Match: another", {"If-Match": '"other"'}, 412),
        ("If-Match: another, unsatisfiable", {"If-Match": '"x"', "Range": f"bytes={size}-"}, 412),
        (
            "If-Unmodified-Since: 2000",
            {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
            412,
        ),
        ("If-None-Match: its ETag", {"If-None-Match": etag}, 304),
        ("If-None-Match: *", {"If-None-Match": "*"}, 304),
        ("If-Modified-Since: its date", {"If-Modified-Since": modified}, 304),
        (
            "If-Modified-Since and a range",
            {"If-Modified-Since": modified, "Range": "bytes=0-1"},
            304,
        ),
    ]


@pytest.fixture(params=["folder", "proxy", "redirect"])
def sending(request: pytest.FixtureRequest, settings: Settings, s3_prefix: str) -> Settings:
    """One way of sending the ZIP: the local folder, or a bucket proxied or redirected to."""
    if request.param == "folder":
        return settings
    seaweed: Seaweed = request.getfixturevalue("seaweed")
    bucket = request.getfixturevalue("s3_bucket")
    return seaweed.settings(settings, bucket, f"{s3_prefix}/zips", zip_download_mode=request.param)


async def test_every_answer_of_a_download_is_declared_as_sent(
    aiohttp_client: AiohttpClient, factory: Factory, sending: Settings, redis_clean: None
) -> None:
    client: Client = await aiohttp_client(create_app(sending))
    owner = await factory.user()
    item = await request_bdr(client, owner, [(await factory.post(owner)).id])
    await run_worker(sending)
    url = (await fetch_item(client, owner, item["id"]))["download_url"]
    redirects = sending.zip_download_mode == "redirect" and sending.zip_store is not None
    if redirects:  # the store's answer has the validators; the server only points to it
        etag, modified, size = '"any"', "Sat, 01 Jan 2000 00:00:00 GMT", 1000
    else:
        whole = await client.get(url, headers=owner.auth)
        etag, modified = whole.headers["ETag"], whole.headers["Last-Modified"]
        size = len(await whole.read())

    answers: dict[tuple[str, str], Answer] = {}
    for what, headers, status in _download_cases(etag, modified, size):
        for method in ("GET", "HEAD"):
            resp = await client.request(
                method, url, headers=owner.auth | headers, allow_redirects=False
            )
            await resp.read()
            assert resp.status == (302 if redirects else status), (method, what)
            answers[(what, method)] = Answer.of(method, DOWNLOAD, resp)
    if not redirects:
        two_ranges = answers[("two ranges", "GET")]
        assert (two_ranges.media, two_ranges.headers["content-length"]) == (
            "application/zip",
            str(size),
        )

    doc, everywhere = await _document(client)
    assert not undeclared(doc, answers.values(), everywhere)
    assert not never_sent(doc, answers.values())


# --- every operation while the database is unreachable ----------------------------------------


@dataclass(frozen=True)
class World:
    owner: UserRow
    post_id: int
    bdr_id: str
    tickets: dict[str, str]  # a download's, a stream's and a part's, minted before the outage
    export_id: str
    policy_id: str


# A cleanup policy matching none of the world's new posts.
POLICY = {"name": "Old ones", "action": "hide", "older_than_days": 30}
Request = tuple[str, str, dict[str, Any]]  # method, URL, aiohttp's keyword arguments


def _outage_requests(w: World) -> dict[tuple[str, str], list[Request]]:
    """Per documented operation, requests that work while the database does."""
    auth = {"headers": w.owner.auth}
    bdr = f"/api/pmd/bdr/{w.bdr_id}"
    export = f"/api/pmd/exports/{w.export_id}"
    rule = f"/api/pmd/policies/{w.policy_id}"
    return {
        ("GET", "/healthz"): [("GET", "/healthz", {})],
        ("GET", "/readyz"): [("GET", "/readyz", {})],
        ("GET", "/openapi.json"): [("GET", "/openapi.json", {})],
        ("GET", "/docs"): [("GET", "/docs", {})],
        ("GET", "/api/pmd/openapi.json"): [("GET", "/api/pmd/openapi.json", {})],
        ("GET", "/api/pmd/docs"): [("GET", "/api/pmd/docs", {})],
        ("GET", "/metrics"): [("GET", "/metrics", {})],
        ("GET", "/api/pmd/posts"): [("GET", "/api/pmd/posts", auth)],
        ("POST", "/api/pmd/action"): [
            (
                "POST",
                "/api/pmd/action",
                auth | {"json": {"action": "hide", "post_ids": [w.post_id]}},
            )
        ],
        ("POST", "/api/pmd/license"): [
            (
                "POST",
                "/api/pmd/license",
                auth | {"json": {"post_ids": [w.post_id], "license_id": None}},
            )
        ],
        ("GET", "/api/pmd/licenses"): [("GET", "/api/pmd/licenses", auth)],
        ("GET", "/api/pmd/actions"): [("GET", "/api/pmd/actions", auth)],
        ("POST", "/api/pmd/actions/{id}/undo"): [
            ("POST", f"/api/pmd/actions/{uuid.uuid4()}/undo", auth)
        ],
        ("POST", "/api/pmd/bdr"): [
            ("POST", "/api/pmd/bdr", auth | {"json": {"post_ids": [w.post_id]}})
        ],
        ("GET", "/api/pmd/bdr"): [("GET", "/api/pmd/bdr", auth)],
        ("GET", "/api/pmd/bdr/{id}"): [("GET", bdr, auth)],
        ("DELETE", "/api/pmd/bdr/{id}"): [("DELETE", bdr, auth)],
        ("GET", DOWNLOAD): [
            ("GET", f"{bdr}/download", auth),
            ("HEAD", f"{bdr}/download", auth),
            ("GET", f"{bdr}/download", {"params": {"ticket": w.tickets["download"]}}),
        ],
        ("POST", "/api/pmd/bdr/sse-ticket"): [("POST", "/api/pmd/bdr/sse-ticket", auth)],
        ("POST", "/api/pmd/exports"): [("POST", "/api/pmd/exports", auth | {"json": {}})],
        ("GET", "/api/pmd/exports"): [("GET", "/api/pmd/exports", auth)],
        ("GET", "/api/pmd/exports/{id}"): [("GET", export, auth)],
        ("DELETE", "/api/pmd/exports/schedule"): [("DELETE", "/api/pmd/exports/schedule", auth)],
        ("DELETE", "/api/pmd/exports/{id}"): [("DELETE", export, auth)],
        ("GET", "/api/pmd/exports/{id}/SHA256SUMS"): [("GET", f"{export}/SHA256SUMS", auth)],
        ("GET", "/api/pmd/exports/{id}/parts/{n}/download"): [
            ("GET", f"{export}/parts/1/download", auth),
            ("HEAD", f"{export}/parts/1/download", auth),
            ("GET", f"{export}/parts/1/download", {"params": {"ticket": w.tickets["part"]}}),
        ],
        ("GET", SSE): [
            ("GET", SSE, auth),
            ("GET", SSE, {"params": {"ticket": w.tickets["stream"]}}),
        ],
        ("POST", "/api/pmd/policies/preview"): [
            ("POST", "/api/pmd/policies/preview", auth | {"json": POLICY})
        ],
        ("GET", "/api/pmd/policies"): [("GET", "/api/pmd/policies", auth)],
        ("POST", "/api/pmd/policies"): [
            ("POST", "/api/pmd/policies", auth | {"json": POLICY | {"expect_count": 0}})
        ],
        ("GET", "/api/pmd/policies/{id}"): [("GET", rule, auth)],
        ("PATCH", "/api/pmd/policies/{id}"): [("PATCH", rule, auth | {"json": {"name": "New"}})],
        ("DELETE", "/api/pmd/policies/{id}"): [("DELETE", rule, auth)],
        ("POST", "/api/pmd/policies/{id}/run"): [("POST", f"{rule}/run", auth)],
    }


async def _world(client: Client, factory: Factory, settings: Settings) -> World:
    owner, post, [item] = await requested(client, factory)
    await run_worker(settings)
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"

    async def ticket(**params: str) -> str:
        resp = await client.post("/api/pmd/bdr/sse-ticket", headers=owner.auth, params=params)
        assert resp.status == 200
        value: str = (await resp.json())["ticket"]
        return value

    resp = await client.post("/api/pmd/exports", headers=owner.auth, json={})
    assert resp.status == 202, await resp.text()
    export_id = (await resp.json())["id"]
    await run_worker(settings)
    tickets = {
        "download": await ticket(bdr_id=item["id"]),
        "stream": await ticket(),
        "part": await ticket(export_id=export_id),
    }
    made = await client.post(
        "/api/pmd/policies", headers=owner.auth, json=POLICY | {"expect_count": 0}
    )
    assert made.status == 201, await made.text()
    return World(owner, post.id, item["id"], tickets, export_id, (await made.json())["id"])


async def _send(client: Client, method: str, url: str, kwargs: dict[str, Any]) -> ClientResponse:
    resp = await client.request(method, url, allow_redirects=False, **kwargs)
    await resp.read()  # an SSE stream would not end: none opens while the database is away
    return resp


async def test_every_answer_while_the_database_is_unreachable_is_declared(
    aiohttp_client: AiohttpClient,
    factory: Factory,
    settings: Settings,
    redis_clean: None,
) -> None:
    relay = DatabaseRelay(settings.direct_url)
    await relay.open()
    try:
        through = direct(settings, on_port(settings.direct_url, relay.port))
        client: Client = await aiohttp_client(create_app(through))
        world = await _world(client, factory, through)
        doc, everywhere = await _document(client)
        requests = _outage_requests(world)
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        assert set(requests) == documented, "an operation without a request here"

        await relay.cut()
        answers = []
        for (method, path), sent in requests.items():
            for request in sent:
                resp = await _send(client, *request)
                answers.append(Answer.of(method, path, resp, await resp.read()))
    finally:
        await relay.cut()

    # Whatever else it does, every operation that authenticates reads the database first.
    secured = {
        (m, p) for p, ops in doc["paths"].items() for m, op in ops.items() if "security" in op
    }
    refused = {(a.method, a.path) for a in answers if a.status == 503}
    assert refused == secured | {("get", "/readyz")}, [(a.path, a.status) for a in answers]
    assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status == 503)
    assert not undeclared(doc, answers, everywhere)
    assert not never_sent(doc, answers)
    assert not undeclared_codes(doc, answers)
    codes = {a.code for a in answers if a.status == 503 and a.code is not None}  # HEAD: no body
    assert codes == {"database_unavailable", "not_ready"}


async def test_a_nul_in_target_sqid_is_a_declared_400_wherever_one_is_taken(
    client: Client, factory: Factory, settings: Settings, redis_clean: None
) -> None:
    world = await _world(client, factory, settings)
    doc, everywhere = await _document(client)
    taking = {
        (m.upper(), p)
        for p, ops in doc["paths"].items()
        for m, op in ops.items()
        if any(q["name"] == "target_sqid" for q in op.get("parameters", []))
    }
    answers = []
    for (method, path), sent in _outage_requests(world).items():
        if (method, path) in taking:
            verb, url, kwargs = sent[0]
            kwargs = kwargs | {"params": {"target_sqid": "a\x00b"}}
            answers.append(Answer.of(verb, path, await _send(client, verb, url, kwargs)))
    assert len(answers) == len(taking) and {a.status for a in answers} == {400}, answers
    assert not undeclared(doc, answers, everywhere)


# --- the items sent, against their documented shapes ------------------------------------------


def _properties(doc: dict[str, Any], name: str) -> dict[str, Any]:
    schema = doc["components"]["schemas"][name]
    assert set(schema["required"]) == set(schema["properties"]), name
    properties: dict[str, Any] = schema["properties"]
    return properties


async def test_a_removed_download_and_export_say_so_as_documented(
    aiohttp_client: AiohttpClient, factory: Factory, settings: Settings, redis_clean: None
) -> None:
    """A removal keeps the documented status set (`expired`) and is told by `removed_at`: the
    items sent carry exactly the documented fields, `removed_at` among them."""
    client: Client = await aiohttp_client(create_app(settings))
    world = await _world(client, factory, settings)
    owner = world.owner
    for path in (f"/api/pmd/bdr/{world.bdr_id}", f"/api/pmd/exports/{world.export_id}"):
        assert (await client.delete(path, headers=owner.auth)).status == 204
    bdr = await fetch_item(client, owner, world.bdr_id)
    export = await (
        await client.get(f"/api/pmd/exports/{world.export_id}", headers=owner.auth)
    ).json()

    doc, _ = await _document(client)
    for name, item in (("BdrItem", bdr), ("ExportItem", export)):
        properties = _properties(doc, name)
        assert set(item) == set(properties), name
        assert item["status"] == "expired" and item["removed_at"] is not None, name
        status = properties["status"]
        assert "removed" not in status["enum"] and "expired" in status["enum"], name
        removed_at = properties["removed_at"]
        assert removed_at["anyOf"] == properties["expires_at"]["anyOf"], name  # a date or null
        assert "removed" in removed_at["description"], name

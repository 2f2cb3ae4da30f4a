"""Access-control matrix: every (method, path) of the app × every kind of caller.

Each endpoint has one row (what a caller acting on someone else's ids gets, and what an
authorised moderator gets); each caller has one column. The expected status of a cell is
exact. After every cell that must not change anything, the tables are compared with a snapshot
taken before it, and the response body is searched for the victim's titles, sqids, BDR ids,
handle, email and ZIP bytes (except what the caller itself sent, which an error may echo).

The table is checked against the router: a new route without a row fails
`test_the_table_covers_every_route`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from tests.helpers import fetch_item, request_bdr, run_worker

Client = TestClient[Any, Any]

# Victim rows get ids no other row has, so a leaked id is a distinctive string in a body.
VICTIM_POST_ID_BASE = 900_000


# --- the world every cell runs against -------------------------------------------------------


@dataclass
class World:
    victim: UserRow
    attacker: UserRow
    moderator: UserRow
    other_moderator: UserRow
    site_owner: UserRow
    banned: UserRow
    deactivated: UserRow
    victim_post_ids: list[int]
    attacker_post_ids: list[int]
    ready_bdr: str  # the victim's, with a ZIP on disk
    pending_bdr: str  # the victim's, queued
    ready_export: str  # the victim's full export, its parts on disk
    license_id: int
    secrets: list[bytes] = field(default_factory=list)


async def build_world(client: Client, factory: Factory, settings: Settings) -> World:
    attacker = await factory.user("attacker")
    attacker_posts = [await factory.post(attacker, title="attacker's own art") for _ in range(2)]
    moderator = await factory.user("moderator", roles=["user", "moderator"])
    other_moderator = await factory.user("othermod", roles=["user", "moderator"])
    site_owner = await factory.user("siteowner", roles=["user", "owner"])
    banned = await factory.user("banneduser", banned_until=_in_a_day())
    deactivated = await factory.user("gone", deactivated=True)
    # A long sqid (5 characters, like the post ids below): a 2-character one could turn up by
    # chance inside any random string of a body (a cursor, a ticket) and read as a leak.
    await factory.pool.execute("SELECT setval('users_id_seq', 800000)")
    victim = await factory.user("victimhandle")

    await factory.pool.execute("SELECT setval('posts_id_seq', $1)", VICTIM_POST_ID_BASE)
    victim_posts = [await factory.post(victim, title=f"VICTIM-SECRET-TITLE-{i}") for i in range(3)]
    await factory.post(site_owner, title="owner's art")
    license_id = await factory.license("CC-BY-4.0")
    ids = [p.id for p in victim_posts]

    ready = await request_bdr(client, victim, ids)
    await run_worker(settings)
    assert (await fetch_item(client, victim, ready["id"]))["status"] == "ready"
    resp = await client.post("/api/pmd/exports", json={}, headers=victim.auth)
    assert resp.status == 202, await resp.text()
    export_id = (await resp.json())["id"]
    await run_worker(settings)
    pending = await request_bdr(client, victim, ids[:1])
    zip_bytes = (settings.bdr_path / _zip_file(settings.bdr_path)).read_bytes()

    secrets: list[bytes] = [
        b"VICTIM-SECRET-TITLE",
        b"victimhandle",
        victim.sqid.encode(),
        ready["id"].encode(),
        pending["id"].encode(),
        export_id.encode(),
        b"PK\x03\x04",  # any ZIP local header
        zip_bytes[-200:],  # the victim's ZIP's central directory
    ]
    for p in victim_posts:
        assert p.data is not None
        secrets += [p.sqid.encode(), str(p.id).encode(), p.data[:64], str(p.storage_key).encode()]
    return World(
        victim=victim,
        attacker=attacker,
        moderator=moderator,
        other_moderator=other_moderator,
        site_owner=site_owner,
        banned=banned,
        deactivated=deactivated,
        victim_post_ids=ids,
        attacker_post_ids=[p.id for p in attacker_posts],
        ready_bdr=ready["id"],
        pending_bdr=pending["id"],
        ready_export=export_id,
        license_id=license_id,
        secrets=secrets,
    )


def _in_a_day() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


def _zip_file(root: Path) -> Path:
    """The ready BDR's ZIP (an export's parts are in a folder of their own)."""
    (found,) = [p for p in root.rglob("*.zip") if "pmd-exports" not in p.parts]
    return found.relative_to(root)


# --- callers (the columns) -------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    headers: Callable[[World, Factory], dict[str, str]]
    target: Callable[[World], str | None] = lambda w: None
    in_body: bool = False  # send target_sqid in the JSON body (POST endpoints) not the query
    # A fixed status whatever the endpoint (auth failures), or the row's "foreign"/"ok" column.
    status: int | None = None
    column: str = ""


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CALLERS = (
    Caller("no token", lambda w, f: {}, status=401),
    Caller("expired token", lambda w, f: _bearer(f.token(w.attacker.sqid, ttl=-30)), status=401),
    Caller(
        "forged signature",
        lambda w, f: _bearer(
            jwt.encode({"sub": w.victim.sqid, "exp": int(time.time()) + 600}, "k" * 40)
        ),
        status=401,
    ),
    Caller("unknown user", lambda w, f: _bearer(f.token("nosuchuser")), status=401),
    Caller("deactivated user", lambda w, f: w.deactivated.auth, status=401),
    Caller("banned user", lambda w, f: w.banned.auth, status=403),
    Caller(
        "banned user on victim", lambda w, f: w.banned.auth, lambda w: w.victim.sqid, status=403
    ),
    Caller("another user with the victim's ids", lambda w, f: w.attacker.auth, column="foreign"),
    Caller(
        "another user, target_sqid=victim",
        lambda w, f: w.attacker.auth,
        lambda w: w.victim.sqid,
        status=403,
    ),
    Caller(
        "another user, target_sqid=victim in the body",
        lambda w, f: w.attacker.auth,
        lambda w: w.victim.sqid,
        in_body=True,
        status=403,
    ),
    Caller(
        "another user, unknown target_sqid",  # 403, not 404: no existence oracle for non-staff
        lambda w, f: w.attacker.auth,
        lambda w: "zzzzzz",
        status=403,
    ),
    Caller("moderator without target_sqid", lambda w, f: w.moderator.auth, column="foreign"),
    Caller(
        "moderator, unknown target_sqid",
        lambda w, f: w.moderator.auth,
        lambda w: "zzzzzz",
        status=404,
    ),
    Caller(
        "moderator, owner target",
        lambda w, f: w.moderator.auth,
        lambda w: w.site_owner.sqid,
        status=403,
    ),
    Caller(
        "moderator, owner target in the body",
        lambda w, f: w.moderator.auth,
        lambda w: w.site_owner.sqid,
        in_body=True,
        status=403,
    ),
    # Moderators do not act on each other: only an owner may.
    Caller(
        "moderator, another moderator's target",
        lambda w, f: w.moderator.auth,
        lambda w: w.other_moderator.sqid,
        status=403,
    ),
    Caller(
        "moderator, another moderator's target in the body",
        lambda w, f: w.moderator.auth,
        lambda w: w.other_moderator.sqid,
        in_body=True,
        status=403,
    ),
    # The authorised cells (they may change state, so they run last).
    Caller(
        "moderator, target_sqid=victim",
        lambda w, f: w.moderator.auth,
        lambda w: w.victim.sqid,
        column="ok",
    ),
    Caller(
        "owner, target_sqid=victim",
        lambda w, f: w.site_owner.auth,
        lambda w: w.victim.sqid,
        column="ok",
    ),
)


# --- endpoints (the rows) --------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    path: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Row:
    build: Callable[[World], Req]
    foreign: int  # acting in one's own scope on the victim's ids
    ok: int  # an authorised moderator/owner on the victim
    public: bool = False  # no auth at all: every caller gets `ok`
    stream: bool = False


def _ids(w: World) -> list[int]:
    return w.victim_post_ids


ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): Row(lambda w: Req("/healthz"), 200, 200, public=True),
    ("GET", "/readyz"): Row(lambda w: Req("/readyz"), 200, 200, public=True),
    ("GET", "/openapi.json"): Row(lambda w: Req("/openapi.json"), 200, 200, public=True),
    # The API reference: a page that renders /openapi.json (its viewer is under /static/pmd).
    ("GET", "/docs"): Row(lambda w: Req("/docs"), 200, 200, public=True),
    # The same under /api/pmd/, the one path a site's proxy sends here (its viewer's files too).
    ("GET", "/api/pmd/openapi.json"): Row(
        lambda w: Req("/api/pmd/openapi.json"), 200, 200, public=True
    ),
    ("GET", "/api/pmd/docs"): Row(lambda w: Req("/api/pmd/docs"), 200, 200, public=True),
    ("GET", "/api/pmd/docs/vendor"): Row(
        lambda w: Req("/api/pmd/docs/vendor/swagger-ui.css"), 200, 200, public=True
    ),
    ("GET", "/metrics"): Row(lambda w: Req("/metrics"), 200, 200, public=True),
    # Listing in one's own scope answers 200 with one's own posts: the victim's never appear.
    ("GET", "/api/pmd/posts"): Row(lambda w: Req("/api/pmd/posts"), 200, 200),
    ("POST", "/api/pmd/action"): Row(
        lambda w: Req("/api/pmd/action", {"action": "hide", "post_ids": _ids(w)}), 400, 200
    ),
    ("POST", "/api/pmd/license"): Row(
        lambda w: Req("/api/pmd/license", {"post_ids": _ids(w), "license_id": w.license_id}),
        400,
        200,
    ),
    ("POST", "/api/pmd/bdr"): Row(lambda w: Req("/api/pmd/bdr", {"post_ids": _ids(w)}), 400, 202),
    ("GET", "/api/pmd/bdr"): Row(lambda w: Req("/api/pmd/bdr"), 200, 200),
    ("GET", "/api/pmd/bdr/{id}"): Row(lambda w: Req(f"/api/pmd/bdr/{w.ready_bdr}"), 404, 200),
    ("DELETE", "/api/pmd/bdr/{id}"): Row(lambda w: Req(f"/api/pmd/bdr/{w.pending_bdr}"), 404, 204),
    ("GET", "/api/pmd/bdr/{id}/download"): Row(
        lambda w: Req(f"/api/pmd/bdr/{w.ready_bdr}/download"), 404, 200
    ),
    ("POST", "/api/pmd/bdr/sse-ticket"): Row(lambda w: Req("/api/pmd/bdr/sse-ticket"), 200, 200),
    ("GET", "/api/pmd/bdr/sse"): Row(lambda w: Req("/api/pmd/bdr/sse"), 200, 200, stream=True),
    ("GET", "/api/pmd/licenses"): Row(lambda w: Req("/api/pmd/licenses"), 200, 200),
    # Exports are the owner's alone: an authorised moderator or the site's owner gets 403. A
    # request in one's own scope asks for a part size out of bounds (400): nothing is created.
    ("POST", "/api/pmd/exports"): Row(
        lambda w: Req("/api/pmd/exports", {"part_bytes": 1}), 400, 403
    ),
    ("GET", "/api/pmd/exports"): Row(lambda w: Req("/api/pmd/exports"), 200, 403),
    ("GET", "/api/pmd/exports/{id}"): Row(
        lambda w: Req(f"/api/pmd/exports/{w.ready_export}"), 404, 403
    ),
    ("DELETE", "/api/pmd/exports/{id}"): Row(
        lambda w: Req(f"/api/pmd/exports/{w.ready_export}"), 404, 403
    ),
    ("GET", "/api/pmd/exports/{id}/SHA256SUMS"): Row(
        lambda w: Req(f"/api/pmd/exports/{w.ready_export}/SHA256SUMS"), 404, 403
    ),
    ("GET", "/api/pmd/exports/{id}/parts/{n}/download"): Row(
        lambda w: Req(f"/api/pmd/exports/{w.ready_export}/parts/1/download"), 404, 403
    ),
    # The page holds no data (it reads the API with the token it keeps), so anyone may load it.
    ("GET", "/u/{user_sqid}/posts"): Row(
        lambda w: Req(f"/u/{w.victim.sqid}/posts"), 200, 200, public=True
    ),
    ("GET", "/static/pmd"): Row(lambda w: Req("/static/pmd/app.js"), 200, 200, public=True),
}
PAGE_ROWS = {
    ("GET", "/u/{user_sqid}/posts"),
    ("GET", "/static/pmd"),
    ("GET", "/api/pmd/docs/vendor"),
}
# HEAD is served wherever GET is (except the stream): same statuses, no body.
ROWS |= {
    ("HEAD", path): row
    for (method, path), row in list(ROWS.items())
    if method == "GET" and not row.stream
}
ENDPOINTS = sorted(ROWS)


def expected(row: Row, caller: Caller) -> int:
    if row.public:
        return row.ok
    if caller.status is not None:
        return caller.status
    return row.foreign if caller.column == "foreign" else row.ok


# --- the state that must not change ----------------------------------------------------------

SNAPSHOT = {
    table: f"SELECT * FROM {table} ORDER BY {order}"
    for table, order in (
        ("users", "id"),
        ("posts", "id"),
        ("post_files", "post_id, format"),
        ("licenses", "id"),
        ("comments", "id"),
        ("reactions", "id"),
        ("audit_logs", "id"),
        ("batch_download_requests", "id"),
        ("exports", "id"),
        ("export_parts", "export_id, number"),
        ("bdr_events", "id"),
    )
}


async def snapshot(pool: asyncpg.Pool, bdr_root: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for table, sql in SNAPSHOT.items():
        state[table] = [tuple(r.values()) for r in await pool.fetch(sql)]
    state["files"] = _files(bdr_root)
    return state


def _files(root: Path) -> list[tuple[str, int]]:
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file()
    )


# --- running a cell ----------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    headers: dict[str, str]
    body: bytes


async def send(
    client: Client, method: str, row: Row, caller: Caller, world: World, factory: Factory
) -> tuple[Outcome, bytes]:
    """The response, and what the request itself carried (an error may echo that back)."""
    req = row.build(world)
    target = caller.target(world)
    params: dict[str, str] = {}
    body = None if req.body is None else dict(req.body)
    if target is not None:
        if caller.in_body and body is not None:
            body["target_sqid"] = target
        else:
            params["target_sqid"] = target
    headers = caller.headers(world, factory)
    sent = (req.path + json.dumps(params) + json.dumps(body)).encode()
    resp = await client.request(method, req.path, params=params, json=body, headers=headers)
    try:
        if row.stream and resp.status == 200:
            # The stream never ends by itself: read its opening (up to `connected`), then leave.
            data = await asyncio.wait_for(resp.content.readuntil(b"event: connected"), 10)
        else:
            data = await resp.read()
    finally:
        resp.close()
    return Outcome(resp.status, dict(resp.headers), data), sent


def check_cell(
    method: str,
    want: int,
    out: Outcome,
    sent: bytes,
    world: World,
    *,
    leak_check: bool,
) -> list[str]:
    problems: list[str] = []
    if out.status != want:
        problems.append(f"status {out.status}, want {want}: {out.body[:300]!r}")
        return problems
    if want == 401 and not out.headers.get("WWW-Authenticate", "").startswith("Bearer"):
        problems.append(f"401 without WWW-Authenticate: Bearer ({out.headers})")
    if want >= 400 and method != "HEAD":
        if out.headers.get("Content-Type") != "application/problem+json":
            problems.append(f"{want} is not problem+json: {out.headers.get('Content-Type')}")
        elif json.loads(out.body)["status"] != want:
            problems.append(f"problem body says {json.loads(out.body)['status']}")
    if method == "HEAD" and out.body:
        problems.append("HEAD answered with a body")
    if leak_check:
        body = _without_random_ticket(out.body)
        for secret in world.secrets:
            if secret not in sent and _contains(body, secret):
                problems.append(f"leaked {secret[:40]!r}")
    return problems


def _contains(body: bytes, secret: bytes) -> bool:
    """A post id counts only as a whole number: inside a timestamp's microseconds
    (".900003Z") or a metric's float it is chance, not a leak."""
    if secret.isdigit():
        return re.search(rb"(?<![0-9.])" + secret + rb"(?![0-9])", body) is not None
    return secret in body


def _without_random_ticket(body: bytes) -> bytes:
    """A fresh SSE ticket is 43 random characters: by chance it can contain a 2-character
    sqid of the victim. It is the caller's own ticket, so it is left out of the leak search."""
    if not body.startswith(b"{") or b'"ticket"' not in body:
        return body
    ticket = json.loads(body).get("ticket")
    return body.replace(ticket.encode(), b"") if isinstance(ticket, str) else body


def test_the_table_covers_every_route(app: Any) -> None:
    routed = {
        (r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None
    }
    assert routed == set(ROWS), {
        "routes without a row": routed - set(ROWS),
        "rows without a route": set(ROWS) - routed,
    }


async def test_the_table_covers_every_documented_operation(client: Client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {key for key in ROWS if key[0] != "HEAD" and key not in PAGE_ROWS}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
async def test_access_matrix(
    client: Client, factory: Factory, settings: Settings, method: str, path: str
) -> None:
    row = ROWS[(method, path)]
    world = await build_world(client, factory, settings)
    failures: list[str] = []
    for caller in CALLERS:
        want = expected(row, caller)
        authorised = caller.column == "ok" and not row.public
        before = await snapshot(factory.pool, settings.bdr_path)
        out, sent = await send(client, method, row, caller, world, factory)
        # The authorised cells see (and may change) the victim's data: that is the point.
        problems = check_cell(method, want, out, sent, world, leak_check=not authorised)
        if not authorised and await snapshot(factory.pool, settings.bdr_path) != before:
            problems.append("the database or the BDR folder changed")
        failures += [f"{caller.name}: {p}" for p in problems]
    assert not failures, f"{method} {path}:\n" + "\n".join(failures)


async def test_authorised_cells_did_what_they_say(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """The positive controls of the matrix are real: the moderator's cells act on the victim."""
    world = await build_world(client, factory, settings)
    mod, target = world.moderator.auth, {"target_sqid": world.victim.sqid}
    page = await (await client.get("/api/pmd/posts", headers=mod, params=target)).json()
    assert sorted(i["id"] for i in page["items"]) == world.victim_post_ids
    resp = await client.get(f"/api/pmd/bdr/{world.ready_bdr}/download", headers=mod, params=target)
    assert resp.status == 200 and (await resp.read()).startswith(b"PK\x03\x04")
    resp = await client.post(
        "/api/pmd/action",
        json={"action": "hide", "post_ids": world.victim_post_ids},
        headers=mod,
        params=target,
    )
    assert resp.status == 200
    flags = await factory.post_flags(world.victim_post_ids)
    assert all(f["hidden_by_mod"] and not f["hidden_by_user"] for f in flags.values())
    audit = await factory.pool.fetch("SELECT actor_id, action FROM audit_logs")
    assert [tuple(a) for a in audit][-1] == (world.moderator.id, "pmd_batch_hide")


async def test_sse_tickets_of_someone_else(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """A ticket is bound to the user it was minted for: no target switch, single use."""
    world = await build_world(client, factory, settings)
    sse = "/api/pmd/bdr/sse"

    async def ticket(user: UserRow, **params: str) -> str:
        resp = await client.post(f"{sse}-ticket", headers=user.auth, params=params)
        assert resp.status == 200
        value: str = (await resp.json())["ticket"]
        return value

    async def cell(
        want: int,
        params: dict[str, str],
        headers: dict[str, str] | None = None,
        *,
        mine: bool = False,
    ) -> None:
        before = await snapshot(factory.pool, settings.bdr_path)
        resp = await client.get(sse, params=params, headers=headers or {})
        try:
            if resp.status == 200:
                data = await asyncio.wait_for(resp.content.readuntil(b"event: connected"), 10)
            else:
                data = await resp.read()
        finally:
            resp.close()
        out = Outcome(resp.status, dict(resp.headers), data)
        sent = json.dumps(params).encode()
        problems = check_cell("GET", want, out, sent, world, leak_check=not mine)
        assert not problems, (params, problems)
        assert await snapshot(factory.pool, settings.bdr_path) == before

    # The attacker's own ticket cannot be pointed at the victim.
    await cell(400, {"ticket": await ticket(world.attacker), "target_sqid": world.victim.sqid})
    # A moderator's ticket minted for the victim cannot be pointed at someone else.
    mod_ticket = await ticket(world.moderator, target_sqid=world.victim.sqid)
    await cell(400, {"ticket": mod_ticket, "target_sqid": world.attacker.sqid})
    # The victim's ticket, once spent, is worth nothing to whoever copies it.
    victim_ticket = await ticket(world.victim)
    resp = await client.get(sse, params={"ticket": victim_ticket})
    assert resp.status == 200
    resp.close()
    await cell(401, {"ticket": victim_ticket})
    # Made-up tickets, and a ticket minted with a token that has expired since.
    await cell(401, {"ticket": "A" * 43})
    await cell(401, {"ticket": "../" * 10})
    short = UserRow(
        world.attacker.id, world.attacker.sqid, "", factory.token(world.attacker.sqid, 1)
    )
    expiring = await ticket(short)
    await asyncio.sleep(
        max(0.0, jwt.decode(short.token, options={"verify_signature": False})["exp"] - time.time())
        + 0.1
    )
    await cell(401, {"ticket": expiring})
    # A Bearer header wins over a ticket in the query: the attacker gets their own stream even
    # when holding the victim's (unspent) ticket, and the ticket stays unspent for the victim.
    unspent = await ticket(world.victim)
    await cell(200, {"ticket": unspent}, world.attacker.auth)
    await cell(200, {"ticket": unspent}, mine=True)  # the victim's own stream
    # A banned or deactivated user's ticket stops working as soon as the account changes.
    banned_later = await factory.user("soonbanned")
    soon = await ticket(banned_later)
    await factory.pool.execute(
        "UPDATE users SET banned_until = now() + interval '1 day' WHERE id = $1", banned_later.id
    )
    await cell(403, {"ticket": soon})
    gone_later = await factory.user("soongone")
    soon = await ticket(gone_later)
    await factory.pool.execute("UPDATE users SET deactivated = true WHERE id = $1", gone_later.id)
    await cell(401, {"ticket": soon})

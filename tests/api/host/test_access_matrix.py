"""Access-control matrix: every (method, path) of the app × every kind of caller.

Each endpoint has one row (what a caller acting on someone else's ids gets, and what an
authorised moderator gets); each caller has one column. The expected status of a cell is
exact. After every cell that must not change anything, the tables are compared with a snapshot
taken before it, and the response body is searched for the victim's titles, sqids, BDR ids,
handle, email and ZIP bytes (except what the caller itself sent, which an error may echo).

The tables are tests/access_table.py, checked against the router: a new route without a row
fails `test_the_table_covers_every_route`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from tests.access_table import (
    CALLERS,
    ENDPOINTS,
    PAGE_ROWS,
    ROWS,
    Caller,
    Row,
    World,
    build_world,
    expected,
)

Client = TestClient[Any, Any]


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
        ("stream_events", "id"),
    )
}


async def snapshot(pool: asyncpg.Pool, zip_root: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for table, sql in SNAPSHOT.items():
        state[table] = [tuple(r.values()) for r in await pool.fetch(sql)]
    state["files"] = _files(zip_root)
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
    path = row.url(world)
    target = caller.target_sqid(world)
    params: dict[str, str] = {}
    body = None if row.body is None else row.body(world)
    if target is not None:
        if caller.in_body and body is not None:
            body["target_sqid"] = target
        else:
            params["target_sqid"] = target
    headers = caller.headers(world, factory)
    sent = (path + json.dumps(params) + json.dumps(body)).encode()
    resp = await client.request(method, path, params=params, json=body, headers=headers)
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
        before = await snapshot(factory.pool, settings.zip_path)
        out, sent = await send(client, method, row, caller, world, factory)
        # The authorised cells see (and may change) the victim's data: that is the point.
        problems = check_cell(method, want, out, sent, world, leak_check=not authorised)
        if not authorised and await snapshot(factory.pool, settings.zip_path) != before:
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
        before = await snapshot(factory.pool, settings.zip_path)
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
        assert await snapshot(factory.pool, settings.zip_path) == before

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
    await cell(403, {"ticket": soon})

"""Smaller hardening points, each against the real app on loopback with PostgreSQL and Redis:
repeated JSON keys, a token's NumericDates, whom a token names (as the host's
`get_current_user` decides it), and download tickets bound to one download request."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.api import tickets
from pmd_service.api.keys import REDIS
from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from support.sse import SSE
from tests.helpers import SECRET, assert_problem, fetch_item, request_bdr, run_worker

Client = TestClient[Any, Any]


async def _flags(pool: asyncpg.Pool, ids: list[int]) -> list[tuple[bool, bool]]:
    rows = await pool.fetch(
        "SELECT hidden_by_user, deleted_by_user FROM posts WHERE id = ANY($1::int[]) ORDER BY id",
        ids,
    )
    return [(r["hidden_by_user"], r["deleted_by_user"]) for r in rows]


# --- repeated keys ---------------------------------------------------------------------------


# Bodies repeating a key (`%s`: the post ids), and that key.
REPEATED_KEYS = {
    "/api/pmd/action": [
        ('{"action":"hide","action":"delete","post_ids":%s}', "action"),
        # An escaped key is the same key once decoded.
        ('{"action":"hide","\\u0061ction":"delete","post_ids":%s}', "action"),
        ('{"action":"hide","post_ids":[1],"post_ids":%s}', "post_ids"),
    ],
    "/api/pmd/license": [('{"post_ids":%s,"license_id":null,"license_id":1}', "license_id")],
    "/api/pmd/bdr": [('{"post_ids":%s,"send_email":false,"send_email":true}', "send_email")],
}


@pytest.mark.parametrize(
    ("path", "template", "key"),
    [(path, *case) for path, cases in REPEATED_KEYS.items() for case in cases],
)
async def test_a_repeated_key_is_refused_and_changes_nothing(
    client: Client, factory: Factory, pool: asyncpg.Pool, path: str, template: str, key: str
) -> None:
    user, ids = await factory.owner_and_bulk(3)
    before = await _flags(pool, ids)
    body = (template % ids).encode()
    resp = await client.post(
        path, data=body, headers={**user.auth, "Content-Type": "application/json"}
    )
    problem = await assert_problem(resp, 400)
    assert problem["type"].endswith("duplicate-key")
    assert problem["key"] == key
    assert f"`{key}`" in problem["detail"]
    assert await _flags(pool, ids) == before
    assert await pool.fetchval("SELECT count(*) FROM batch_download_requests") == 0


async def test_a_key_name_as_a_value_or_escapes_without_repeats_still_pass(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """The exact check behind the fast one: a field's name inside a value is no repeat."""
    user, victim, ids = await factory.caller_and_posts(2, roles=["user", "moderator"])
    # The victim's sqid could itself be "action": the fast check sees `"action"` twice, or
    # a backslash; the exact one finds no repeated key.
    await pool.execute("UPDATE users SET public_sqid = 'action' WHERE id = $1", victim.id)
    for action, sqid in (("hide", "action"), ("unhide", "\\u0061ction")):
        body = f'{{"action":"{action}","post_ids":{ids},"target_sqid":"{sqid}"}}'
        resp = await client.post(
            "/api/pmd/action", data=body, headers={**user.auth, "Content-Type": "application/json"}
        )
        assert resp.status == 200, await resp.text()
        flags = await pool.fetch("SELECT hidden_by_mod FROM posts WHERE id = ANY($1::int[])", ids)
        assert all(r["hidden_by_mod"] == (action == "hide") for r in flags)


# --- NumericDates ----------------------------------------------------------------------------


def _token(user: UserRow, **claims: Any) -> dict[str, str]:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": user.sqid, "iat": now, "exp": now + 600, **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


async def test_exp_iat_and_nbf_must_be_numbers(client: Client, factory: Factory) -> None:
    user = await factory.user()
    now = int(time.time())
    for name, value in [
        ("exp", str(now + 600)),  # PyJWT alone accepts it: int("…")
        ("exp", f"{now + 600}.0"),
        ("exp", True),
        ("exp", [now + 600]),
        ("iat", str(now)),
        ("nbf", str(now)),
        ("nbf", False),
    ]:
        resp = await client.get("/api/pmd/posts", headers=_token(user, **{name: value}))
        problem = await assert_problem(resp, 401)
        if value is not True:  # PyJWT reads True as 1 and says expired: refused either way
            assert f"`{name}`" in problem["detail"], (name, value)
    # Numbers, integer or not, are NumericDates.
    for claims in ({"exp": now + 600.5}, {"iat": now - 0.25, "nbf": now - 1}):
        resp = await client.get("/api/pmd/posts", headers=_token(user, **claims))
        assert resp.status == 200, (claims, await resp.text())


# --- whom a token names: the host's get_current_user ----------------------------------------


async def test_sub_then_user_id_as_the_host_resolves_them(client: Client, factory: Factory) -> None:
    alice = await factory.user()
    bob = await factory.user()
    bob_key = await factory.pool.fetchval("SELECT user_key FROM users WHERE id = $1", bob.id)

    async def whom(**claims: Any) -> Any:
        now = int(time.time())
        payload = {"iat": now, "exp": now + 600, "type": "access", **claims}
        token = jwt.encode(payload, SECRET, algorithm="HS256")
        # Only Alice may ask for Alice's posts (Bob is no moderator): 200 says who called.
        resp = await client.get(
            "/api/pmd/posts",
            params={"target_sqid": alice.sqid, "limit": "1"},
            headers={"Authorization": f"Bearer {token}"},
        )
        return {200: "alice", 403: "bob"}.get(resp.status, resp.status)

    # `sub` names someone: it wins, whatever `user_id` says.
    assert await whom(sub=alice.sqid, user_id=str(bob_key)) == "alice"
    # `sub` names nobody: the host falls back to `user_id`, and so do we.
    assert await whom(sub="nobody", user_id=str(bob_key)) == "bob"
    # An empty `sub` counts as absent (the host's `if sub:`), so `user_id` decides.
    assert await whom(sub="", user_id=str(bob_key)) == "bob"
    # `sub` names nobody and `user_id` is not a key, or is empty: nobody.
    assert await whom(sub="nobody", user_id="12") == 401
    assert await whom(sub="", user_id="") == 401
    assert await whom(sub=alice.sqid, user_id="not-a-key") == "alice"


# --- download tickets bound to one BDR ------------------------------------------------------


async def _ticket(client: Client, user: UserRow, **params: str) -> str:
    resp = await client.post("/api/pmd/bdr/sse-ticket", headers=user.auth, params=params)
    assert resp.status == 200, await resp.text()
    ticket: str = (await resp.json())["ticket"]
    return ticket


async def test_a_download_ticket_keeps_the_field_every_release_reads(
    client: Client, factory: Factory
) -> None:
    """Tickets live in the Redis that both releases of a rolling upgrade share: a download's id
    stays under `bdr_id`, for an export's too, or the other release's server would refuse it."""
    owner, posts = await factory.owner_and_posts(1)
    item = await request_bdr(client, owner, [posts[0].id])
    ticket = await _ticket(client, owner, bdr_id=item["id"])
    where = tickets.redis_key(ticket)
    raw = await client.app[REDIS].get(where)
    stored = json.loads(raw.partition(b".")[2])
    assert stored["bdr_id"] == item["id"] and "download_id" not in stored
    stream_ticket = await _ticket(client, owner)
    raw = await client.app[REDIS].get(tickets.redis_key(stream_ticket))
    stream = json.loads(raw.partition(b".")[2])
    assert stream["bdr_id"] is None


async def test_a_download_ticket_opens_its_own_bdr_only(
    client: Client, factory: Factory, settings: Settings
) -> None:
    owner, posts = await factory.owner_and_posts(2)
    a = await request_bdr(client, owner, [posts[0].id])
    b = await request_bdr(client, owner, [posts[1].id])
    await run_worker(settings)
    for item in (a, b):
        assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"

    def link(item: dict[str, Any], ticket: str) -> str:
        return f"/api/pmd/bdr/{item['id']}/download?ticket={ticket}"

    # A ticket for A does not download B of the same user (and is spent by trying).
    for_a = await _ticket(client, owner, bdr_id=a["id"])
    problem = await assert_problem(await client.get(link(b, for_a)), 401)
    assert a["id"] in problem["detail"]
    # Nor does a stream ticket download anything, nor a download ticket open the stream.
    problem = await assert_problem(await client.get(link(a, await _ticket(client, owner))), 401)
    assert "bdr_id" in problem["detail"]
    await assert_problem(
        await client.get(SSE, params={"ticket": await _ticket(client, owner, bdr_id=a["id"])}), 401
    )
    # A's own ticket downloads A, once; the id is accepted in any UUID spelling.
    for_a = await _ticket(client, owner, bdr_id=a["id"].upper())
    resp = await client.get(link(a, for_a))
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
    await assert_problem(await client.get(link(a, for_a)), 401)
    # Minting for a BDR that is not the target's, or not an id: refused at once.
    other = await factory.user()
    resp = await client.post(
        "/api/pmd/bdr/sse-ticket", headers=other.auth, params={"bdr_id": a["id"]}
    )
    await assert_problem(resp, 404)
    resp = await client.post(
        "/api/pmd/bdr/sse-ticket", headers=owner.auth, params={"bdr_id": str(uuid.uuid4())}
    )
    await assert_problem(resp, 404)
    resp = await client.post(
        "/api/pmd/bdr/sse-ticket", headers=owner.auth, params={"bdr_id": "nope"}
    )
    await assert_problem(resp, 400)


async def test_a_head_leaves_the_download_ticket_for_the_get(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """A HEAD sends no byte of the ZIP: its ticket still opens the one GET after it."""
    owner = await factory.user()
    item = await request_bdr(client, owner, [(await factory.post(owner)).id])
    await run_worker(settings)
    assert (await fetch_item(client, owner, item["id"]))["status"] == "ready"
    link = f"/api/pmd/bdr/{item['id']}/download?ticket={await _ticket(client, owner, bdr_id=item['id'])}"
    for _ in range(2):
        head = await client.head(link)
        assert head.status == 200 and head.headers["Content-Type"] == "application/zip"
    resp = await client.get(link)
    assert resp.status == 200 and len(await resp.read()) == int(head.headers["Content-Length"])
    await assert_problem(await client.get(link), 401)  # the GET spent it
    assert (await client.head(link)).status == 401


async def test_a_user_without_a_public_id_redeems_tickets(
    client: Client, factory: Factory, settings: Settings
) -> None:
    """The host's users.public_sqid allows NULL, and its older tokens name a user by
    `user_id` alone: such a user's tickets open the stream and the download (a 500 before)."""
    made = await factory.user()
    post = await factory.post(made)
    key = await factory.pool.fetchval(
        "UPDATE users SET public_sqid = NULL WHERE id = $1 RETURNING user_key", made.id
    )
    token = jwt.encode(
        {"user_id": str(key), "type": "access", "exp": int(time.time()) + 600},
        SECRET,
        algorithm="HS256",
    )
    user = UserRow(made.id, "", made.handle, token)
    item = await request_bdr(client, user, [post.id])
    await run_worker(settings)
    assert (await fetch_item(client, user, item["id"]))["status"] == "ready"
    stream = await client.get(SSE, params={"ticket": await _ticket(client, user)})
    try:
        assert stream.status == 200, await stream.text()
        assert stream.headers["Content-Type"].startswith("text/event-stream")
    finally:
        stream.close()
    ticket = await _ticket(client, user, bdr_id=item["id"])
    resp = await client.get(f"/api/pmd/bdr/{item['id']}/download", params={"ticket": ticket})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/zip"

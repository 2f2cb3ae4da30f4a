"""The access matrix's tables (tests/api/test_access_matrix.py runs them): the world every cell runs
against, the callers (its columns), the endpoints (its rows) and the status each cell expects."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
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


# Who calls (their headers) and on whose behalf (target_sqid), as the table below names them.
def _attacker(w: World, f: Factory) -> dict[str, str]:
    return w.attacker.auth


def _banned(w: World, f: Factory) -> dict[str, str]:
    return w.banned.auth


def _deactivated(w: World, f: Factory) -> dict[str, str]:
    return w.deactivated.auth


def _moderator(w: World, f: Factory) -> dict[str, str]:
    return w.moderator.auth


def _site_owner(w: World, f: Factory) -> dict[str, str]:
    return w.site_owner.auth


def _victims(w: World) -> str:
    return w.victim.sqid


def _site_owners(w: World) -> str:
    return w.site_owner.sqid


def _other_moderators(w: World) -> str:
    return w.other_moderator.sqid


def _unknown(w: World) -> str:
    return "zzzzzz"


_REFUSED = (
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
    Caller("deactivated user", _deactivated, status=401),
    Caller("banned user", _banned, status=403),
    Caller("banned user on victim", _banned, _victims, status=403),
    Caller("another user with the victim's ids", _attacker, column="foreign"),
    Caller("another user, target_sqid=victim", _attacker, _victims, status=403),
    # 403, not 404: no existence oracle for non-staff.
    Caller("another user, unknown target_sqid", _attacker, _unknown, status=403),
    Caller("moderator without target_sqid", _moderator, column="foreign"),
    Caller("moderator, unknown target_sqid", _moderator, _unknown, status=404),
    Caller("moderator, owner target", _moderator, _site_owners, status=403),
    # Moderators do not act on each other: only an owner may.
    Caller("moderator, another moderator's target", _moderator, _other_moderators, status=403),
)
# The refused targets again, named in the JSON body instead of the query.
_IN_BODY = (
    "another user, target_sqid=victim",
    "moderator, owner target",
    "moderator, another moderator's target",
)
CALLERS = (
    *_REFUSED,
    *(
        replace(c, name=f"{c.name} in the body", in_body=True)
        for c in _REFUSED
        if c.name in _IN_BODY
    ),
    # The authorised cells (they may change state, so they run last).
    Caller("moderator, target_sqid=victim", _moderator, _victims, column="ok"),
    Caller("owner, target_sqid=victim", _site_owner, _victims, column="ok"),
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

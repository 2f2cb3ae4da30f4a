"""The access matrix's tables: its world, callers (columns), endpoints (rows) and statuses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from pmd_service.core.settings import Settings
from support.seeding import Factory, UserRow
from tests.helpers import Client, fetch_item, request_bdr, run_worker

# Victim rows get ids no other row has, so a leaked id is a distinctive string in a body.
VICTIM_POST_ID_BASE = 900_000


# A cleanup policy that matches nothing of the world's new posts.
POLICY = {"name": "Old ones", "action": "hide", "older_than_days": 30}


@dataclass
class World:
    victim: UserRow
    attacker: UserRow
    moderator: UserRow
    other_moderator: UserRow
    site_owner: UserRow
    banned: UserRow
    deactivated: UserRow
    ready_bdr: str = ""  # the victim's, with a ZIP on disk
    pending_bdr: str = ""  # the victim's, queued
    ready_export: str = ""  # the victim's full export, its parts on disk
    victim_action: str = ""  # the victim's own bulk action: only the victim may undo it
    victim_policy: str = ""  # the victim's cleanup policy
    license_id: int = 0
    victim_post_ids: list[int] = field(default_factory=list)
    attacker_post_ids: list[int] = field(default_factory=list)
    secrets: list[bytes] = field(default_factory=list)


async def build_world(client: Client, factory: Factory, settings: Settings) -> World:
    # A long sqid for the victim: a short one could turn up by chance in a body.
    await factory.pool.execute("SELECT setval('users_id_seq', 800000)")
    mod, owner = ["user", "moderator"], ["user", "owner"]
    w = World(
        victim=await factory.user("victimhandle"),
        attacker=await factory.user("attacker"),
        moderator=await factory.user("moderator", roles=mod),
        other_moderator=await factory.user("othermod", roles=mod),
        site_owner=await factory.user("siteowner", roles=owner),
        banned=await factory.user("banneduser", banned_until=datetime.now(UTC) + timedelta(1)),
        deactivated=await factory.user("gone", deactivated=True),
    )
    for _ in range(2):
        w.attacker_post_ids.append((await factory.post(w.attacker, title="attacker's art")).id)
    await factory.pool.execute("SELECT setval('posts_id_seq', $1)", VICTIM_POST_ID_BASE)
    victim_posts = [
        await factory.post(w.victim, title=f"VICTIM-SECRET-TITLE-{i}") for i in range(3)
    ]
    await factory.post(w.site_owner, title="owner's art")
    w.license_id = await factory.license("CC-BY-4.0")
    w.victim_post_ids = ids = [p.id for p in victim_posts]

    resp = await client.post(
        "/api/pmd/action",
        json={"action": "tags", "post_ids": ids[:1], "add": ["mine"]},
        headers=w.victim.auth,
    )
    w.victim_action = (await resp.json())["undo"].split("/")[-2]
    w.ready_bdr = (await request_bdr(client, w.victim, ids))["id"]
    await run_worker(settings)
    assert (await fetch_item(client, w.victim, w.ready_bdr))["status"] == "ready"
    resp = await client.post("/api/pmd/exports", json={}, headers=w.victim.auth)
    assert resp.status == 202, await resp.text()
    w.ready_export = (await resp.json())["id"]
    await run_worker(settings)
    w.pending_bdr = (await request_bdr(client, w.victim, ids[:1]))["id"]
    policy = {**POLICY, "expect_count": 0}
    resp = await client.post("/api/pmd/policies", json=policy, headers=w.victim.auth)
    assert resp.status == 201, await resp.text()
    w.victim_policy = (await resp.json())["id"]
    # The ready BDR's ZIP (an export's parts are in a folder of their own).
    (zip_file,) = [p for p in settings.zip_path.rglob("*.zip") if "pmd-exports" not in p.parts]
    w.secrets = [
        b"VICTIM-SECRET-TITLE",
        b"victimhandle",
        w.victim.sqid.encode(),
        *(
            value.encode()
            for value in (w.ready_bdr, w.pending_bdr, w.ready_export, w.victim_policy)
        ),
        b"PK\x03\x04",  # any ZIP local header
        zip_file.read_bytes()[-200:],  # the victim's ZIP's central directory
    ]
    for p in victim_posts:
        assert p.data is not None
        w.secrets += [p.sqid.encode(), str(p.id).encode(), p.data[:64], str(p.storage_key).encode()]
    return w


@dataclass(frozen=True)
class Caller:
    name: str
    headers: Callable[[World, Factory], dict[str, str]]
    target: str | None = None  # the World's user named in target_sqid
    # A fixed status whatever the endpoint (auth failures), or the row's "foreign"/"ok" column.
    status: int | None = None
    column: str = ""
    in_body: bool = False  # send target_sqid in the JSON body (POST endpoints) not the query
    body_too: bool = False  # refused again with target_sqid in the body

    def target_sqid(self, w: World) -> str | None:
        if self.target is None:
            return None
        return "zzzzzz" if self.target == "unknown" else getattr(w, self.target).sqid


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _auth(who: str) -> Callable[[World, Factory], dict[str, str]]:
    return lambda w, f: getattr(w, who).auth


def _forged(w: World, f: Factory) -> dict[str, str]:
    return _bearer(jwt.encode({"sub": w.victim.sqid, "exp": int(time.time()) + 600}, "k" * 40))


_REFUSED = (
    Caller("no token", lambda w, f: {}, status=401),
    Caller("expired token", lambda w, f: _bearer(f.token(w.attacker.sqid, ttl=-30)), status=401),
    Caller("forged signature", _forged, status=401),
    Caller("unknown user", lambda w, f: _bearer(f.token("nosuchuser")), status=401),
    Caller("deactivated user", _auth("deactivated"), status=403),
    Caller("banned user", _auth("banned"), status=403),
    Caller("banned user on victim", _auth("banned"), "victim", status=403),
    Caller("another user with the victim's ids", _auth("attacker"), column="foreign"),
    Caller("another user, target_sqid=victim", _auth("attacker"), "victim", 403, body_too=True),
    # 403, not 404: no existence oracle for non-staff.
    Caller("another user, unknown target_sqid", _auth("attacker"), "unknown", status=403),
    Caller("moderator without target_sqid", _auth("moderator"), column="foreign"),
    Caller("moderator, unknown target_sqid", _auth("moderator"), "unknown", status=404),
    Caller("moderator, owner target", _auth("moderator"), "site_owner", 403, body_too=True),
    # Moderators do not act on each other: only an owner may.
    Caller(
        "moderator, another moderator's target",
        _auth("moderator"),
        "other_moderator",
        403,
        body_too=True,
    ),
)
CALLERS = (
    *_REFUSED,
    *(replace(c, name=f"{c.name} in the body", in_body=True) for c in _REFUSED if c.body_too),
    # The authorised cells (they may change state, so they run last).
    Caller("moderator, target_sqid=victim", _auth("moderator"), "victim", column="ok"),
    Caller("owner, target_sqid=victim", _auth("site_owner"), "victim", column="ok"),
)


@dataclass(frozen=True)
class Row:
    method: str
    route: str
    foreign: int  # acting in one's own scope on the victim's ids
    ok: int  # an authorised moderator/owner on the victim
    id: str = ""  # the World's field that fills the route's {id}
    file: str = ""  # the file asked for, where the route is a folder
    body: Callable[[World], dict[str, Any]] | None = None
    public: bool = False  # no auth at all: every caller gets `ok`
    stream: bool = False

    def url(self, w: World) -> str:
        url = self.route.format(id=getattr(w, self.id, ""), n=1, user_sqid=w.victim.sqid)
        return f"{url}/{self.file}" if self.file else url


_ROWS = (
    Row("GET", "/healthz", 200, 200, public=True),
    Row("GET", "/readyz", 200, 200, public=True),
    Row("GET", "/openapi.json", 200, 200, public=True),
    # The API reference: a page that renders /openapi.json (its viewer is under /static/pmd).
    Row("GET", "/docs", 200, 200, public=True),
    # The same under /api/pmd/, the one path a site's proxy sends here (its viewer's files too).
    Row("GET", "/api/pmd/openapi.json", 200, 200, public=True),
    Row("GET", "/api/pmd/docs", 200, 200, public=True),
    Row("GET", "/api/pmd/docs/vendor", 200, 200, file="swagger-ui.css", public=True),
    Row("GET", "/metrics", 200, 200, public=True),
    # Listing in one's own scope answers 200 with one's own posts: the victim's never appear.
    Row("GET", "/api/pmd/posts", 200, 200),
    Row(
        "POST",
        "/api/pmd/action",
        400,
        200,
        body=lambda w: {"action": "hide", "post_ids": w.victim_post_ids},
    ),
    Row(
        "POST",
        "/api/pmd/license",
        400,
        200,
        body=lambda w: {"post_ids": w.victim_post_ids, "license_id": w.license_id},
    ),
    Row("POST", "/api/pmd/bdr", 400, 202, body=lambda w: {"post_ids": w.victim_post_ids}),
    Row("GET", "/api/pmd/bdr", 200, 200),
    Row("GET", "/api/pmd/bdr/{id}", 404, 200, id="ready_bdr"),
    Row("DELETE", "/api/pmd/bdr/{id}", 404, 204, id="pending_bdr"),
    Row("GET", "/api/pmd/bdr/{id}/download", 404, 200, id="ready_bdr"),
    Row("POST", "/api/pmd/bdr/sse-ticket", 200, 200),
    Row("GET", "/api/pmd/bdr/sse", 200, 200, stream=True),
    Row("GET", "/api/pmd/licenses", 200, 200),
    # An undo is its actor's alone: the victim's own action is not found for anyone else, an
    # authorised moderator or the site's owner included.
    Row("POST", "/api/pmd/actions/{id}/undo", 404, 404, id="victim_action"),
    # The list of actions in one's own scope holds one's own (none of the victim's).
    Row("GET", "/api/pmd/actions", 200, 200),
    # Exports are the owner's alone: an authorised moderator or the site's owner gets 403. A
    # request in one's own scope asks for a part size out of bounds (400): nothing is created.
    Row("POST", "/api/pmd/exports", 400, 403, body=lambda w: {"part_bytes": 1}),
    Row("GET", "/api/pmd/exports", 200, 403),
    Row("DELETE", "/api/pmd/exports/schedule", 404, 403),
    Row("GET", "/api/pmd/exports/{id}", 404, 403, id="ready_export"),
    Row("DELETE", "/api/pmd/exports/{id}", 404, 403, id="ready_export"),
    Row("GET", "/api/pmd/exports/{id}/SHA256SUMS", 404, 403, id="ready_export"),
    Row("GET", "/api/pmd/exports/{id}/parts/{n}/download", 404, 403, id="ready_export"),
    # Cleanup policies: a preview and the list in one's own scope are one's own; creating,
    # running and deleting are the owner's alone (an authorised moderator gets 403), while a
    # moderator reads and pauses. In one's own scope, a create with a bad filter is a 400.
    Row("POST", "/api/pmd/policies/preview", 200, 200, body=lambda w: dict(POLICY)),
    Row("GET", "/api/pmd/policies", 200, 200),
    Row(
        "POST",
        "/api/pmd/policies",
        400,
        403,
        body=lambda w: {**POLICY, "filter": {"created_after": "soon"}, "expect_count": 0},
    ),
    Row("GET", "/api/pmd/policies/{id}", 404, 200, id="victim_policy"),
    Row(
        "PATCH",
        "/api/pmd/policies/{id}",
        404,
        200,
        id="victim_policy",
        body=lambda w: {"enabled": False},
    ),
    Row("POST", "/api/pmd/policies/{id}/run", 404, 403, id="victim_policy"),
    Row("DELETE", "/api/pmd/policies/{id}", 404, 403, id="victim_policy"),
    # The page holds no data (it reads the API with the token it keeps), so anyone may load it.
    Row("GET", "/u/{user_sqid}/posts", 200, 200, public=True),
    Row("GET", "/static/pmd", 200, 200, file="app.js", public=True),
)
ROWS = {(row.method, row.route): row for row in _ROWS}
# HEAD is served wherever GET is (except the stream): same statuses, no body.
ROWS |= {
    ("HEAD", r.route): replace(r, method="HEAD")
    for r in _ROWS
    if r.method == "GET" and not r.stream
}
PAGE_ROWS = {
    ("GET", "/u/{user_sqid}/posts"),
    ("GET", "/static/pmd"),
    ("GET", "/api/pmd/docs/vendor"),
}
ENDPOINTS = sorted(ROWS)


def expected(row: Row, caller: Caller) -> int:
    if row.public:
        return row.ok
    if caller.status is not None:
        return caller.status
    return row.foreign if caller.column == "foreign" else row.ok

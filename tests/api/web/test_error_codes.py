"""Every (operation, code) the OpenAPI document declares, provoked against the real server: the
answer has the code's status, carries the code and the `details` fields the table names (of
their types), and the document declares that code for that status of that operation.

What needs the environment broken (the database, Redis or the object store away, a full disk,
a server shutting down, a body that trickles) is provoked by the tests of those conditions, not
here: `ELSEWHERE` names each such pair with the test that provokes it, and the walk checks the
document declares nothing else it did not provoke.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.codes import TABLE, Code
from pmd_service.core.settings import Settings
from pmd_service.web.app import create_app
from support.seeding import Factory, PostRow, UserRow
from support.sse import SSE
from support.stack import CHECKOUT
from tests.helpers import acted, fetch_item, request_bdr, run_worker
from tests.unit.test_error_codes import declared_codes

Client = TestClient[Any, Any]
Req = tuple[str, str, dict[str, Any]]  # method, URL, aiohttp's keyword arguments

BDR = "/api/pmd/bdr/{id}"
DOWNLOAD = "/api/pmd/bdr/{id}/download"
EXPORT = "/api/pmd/exports/{id}"
PART = "/api/pmd/exports/{id}/parts/{n}/download"
SUMS = "/api/pmd/exports/{id}/SHA256SUMS"
UNDO = "/api/pmd/actions/{id}/undo"

# Declared, provoked and asserted by the tests of the conditions they need rather than here:
# each names its test function (`test_elsewhere_names_tests_that_assert_the_code` holds it).
_CAPACITY = "tests/api/web/test_db_capacity.py::test_unreachable_redis_is_503_not_500"
_BUDGET = "tests/api/bdr/test_bdr_budget.py::"
_PROXY = "tests/api/bdr/test_proxy_downloads.py::test_proxied_downloads_are_capped_per_user_and_per_process"
_CRASH = "tests/api/exports/test_exports.py::test_a_crash_mid_part_keeps_the_published_parts"
ELSEWHERE: dict[Code, str] = {
    Code.DATABASE_UNAVAILABLE: "tests/api/web/test_openapi_answers.py::"
    "test_every_answer_while_the_database_is_unreachable_is_declared",
    Code.TICKETS_UNAVAILABLE: _CAPACITY,
    Code.LOW_DISK_SPACE: _BUDGET + "test_new_requests_wait_while_the_zip_folder_is_short_of_space",
    Code.STORE_UNAVAILABLE: "tests/api/bdr/test_store_outage.py::"
    "test_a_frozen_store_answers_downloads_503_and_removals_204",
    Code.TOO_MANY_DOWNLOADS: _PROXY,
    Code.DOWNLOADS_BUSY: _PROXY,
    Code.TOO_MANY_STREAMS: "tests/api/stream/test_sse.py::test_per_user_cap",
    Code.SHUTTING_DOWN: "tests/api/stream/test_sse_openings.py::"
    "test_an_opening_that_waited_through_the_start_of_a_shutdown_is_a_503",
    Code.BODY_TIMEOUT: "tests/processes/test_connection_bounds.py::"
    "test_a_body_that_does_not_come_in_time_is_answered_408_and_closed",
    Code.ARTWORK_REUPLOADED: "tests/api/posts/test_posts_restore_rule.py::"
    "test_a_reuploaded_artwork_is_marked_and_never_restored",
    Code.SET_CHANGED: "tests/api/posts/test_posts_restore_rule.py::"
    "test_an_approval_with_its_digest_acts_on_that_set_only",
    Code.UNDO_DROPPED: "tests/api/posts/test_undo_history.py::_assert_dropped",
    Code.BDR_DAILY_BYTES_LIMIT: _BUDGET + "test_the_daily_byte_budget_is_the_requesters",
    Code.BDR_TOO_LARGE: _BUDGET + "test_a_request_over_the_size_cap_is_refused_saying_the_size",
    Code.EXPORT_SCHEDULED: "tests/api/exports/test_recurring_exports.py::"
    "test_cancelling_a_schedule_stops_the_next_exports",
    Code.PART_NOT_READY: _CRASH,
    Code.PART_NO_FILE: _CRASH,
    Code.TOO_MANY_TAGS: "tests/api/posts/test_posts_bulk.py::"
    "test_tags_past_the_hosts_cap_are_refused_naming_the_posts",
    Code.ROW_BUDGET_EXCEEDED: "tests/api/posts/test_write_budget.py::_budget_refusal",
    Code.SITE_BUDGET_EXCEEDED: "tests/api/posts/test_write_budget.py::_site_refusal",
    Code.UNDO_HISTORY_MISSING: "tests/api/posts/test_undo_upgrade.py::"
    "test_the_previous_releases_actions_are_undone_after_the_upgrade",
    Code.BDR_REPEATED: "tests/api/bdr/test_bdr_api.py::"
    "test_a_repeated_request_names_the_download_that_serves_unless_it_insists",
}
# Declared and never provoked: each with why.
_POLICIES = "tests/api/posts/test_cleanup_policies.py::"
ELSEWHERE |= {
    Code.POLICIES_OFF: _POLICIES + "test_an_operator_turns_policies_off_with_one_setting",
    Code.POLICY_NOT_FOUND: _POLICIES + "test_a_moderator_reads_and_pauses_another_owner_gets_404",
    Code.POLICY_OWNER_ONLY: _POLICIES + "test_a_moderator_reads_and_pauses_another_owner_gets_404",
    Code.TOO_MANY_POLICIES: _POLICIES + "test_an_owner_may_have_at_most_the_settings_policies",
    Code.POLICY_WIDENS: _POLICIES + "test_a_widening_needs_its_count_narrowing_and_pausing_do_not",
    Code.POLICY_PAUSED_BY_MODERATOR: "tests/api/posts/test_policy_guards.py::"
    "test_a_moderators_pause_binds_until_a_moderator_lifts_it",
    Code.POLICY_RUN_TIMEOUT: "tests/api/posts/test_policy_guards.py::"
    "test_run_now_held_up_by_a_locked_post_answers_503_and_says_so",
}

UNPROVOKED: dict[Code, str] = {
    # A retry sees the upload that broke the first run and names it (artwork_reuploaded); only
    # uploads that commit and are deleted again within every one of the retries reach this.
    Code.RESTORE_INTERRUPTED: "an upload committed and deleted again within each retry",
}


def test_elsewhere_names_tests_that_assert_the_code() -> None:
    for code, where in ELSEWHERE.items():
        path, _, name = where.partition("::")
        tree = ast.parse((CHECKOUT / path).read_text())
        found = next(
            (
                n
                for n in tree.body
                if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef) and n.name == name
            ),
            None,
        )
        assert found is not None, f"{code}: {where} names no function"
        texts = [n.value for n in ast.walk(found) if isinstance(n, ast.Constant)]
        names = [
            t.decode() if isinstance(t, bytes) else t for t in texts if isinstance(t, str | bytes)
        ]
        assert any(code.value in t for t in names), f"{code}: {where} never names it"


@dataclass
class World:
    owner: UserRow
    posts: list[PostRow]
    other_post: PostRow
    moderator: UserRow
    moderator2: UserRow
    site_owner: UserRow
    plain: UserRow
    banned: UserRow
    deactivated: UserRow
    empty: UserRow  # no artwork
    bdr: str  # the owner's, ready
    export: str  # the owner's, ready
    policy: str  # the owner's cleanup policy
    mint: Callable[..., Awaitable[str]]  # a new ticket of the owner's (bdr_id=, export_id=)


async def _world(client: Client, factory: Factory, settings: Settings) -> World:
    owner = await factory.user()
    posts = [await factory.post(owner) for _ in range(3)]
    other = await factory.user()
    bdr = await request_bdr(client, owner, [posts[0].id])
    resp = await client.post("/api/pmd/exports", headers=owner.auth, json={})
    assert resp.status == 202, await resp.text()
    export = (await resp.json())["id"]
    await run_worker(settings)
    assert (await fetch_item(client, owner, bdr["id"]))["status"] == "ready"

    body = {"name": "Old", "action": "hide", "older_than_days": 1}
    seen = await client.post("/api/pmd/policies/preview", headers=owner.auth, json=body)
    count = (await seen.json())["count"]
    made = await client.post(
        "/api/pmd/policies", headers=owner.auth, json=body | {"expect_count": count}
    )
    assert made.status == 201, await made.text()

    async def ticket(**params: str) -> str:
        resp = await client.post("/api/pmd/bdr/sse-ticket", headers=owner.auth, params=params)
        assert resp.status == 200, await resp.text()
        value: str = (await resp.json())["ticket"]
        return value

    return World(
        owner,
        posts,
        await factory.post(other),
        await factory.user(roles=["moderator"]),
        await factory.user(roles=["moderator"]),
        await factory.user(roles=["owner"]),
        await factory.user(),
        await factory.user(banned_until=datetime(2999, 1, 1, tzinfo=UTC)),
        await factory.user(deactivated=True),
        await factory.user(),
        bdr["id"],
        export,
        (await made.json())["id"],
        ticket,
    )


def _base(w: World) -> dict[tuple[str, str], Req]:
    """Per operation of /api/pmd/*, one request the owner may make (its answer aside)."""
    auth = {"headers": w.owner.auth}
    bdr, export = f"/api/pmd/bdr/{w.bdr}", f"/api/pmd/exports/{w.export}"
    policy = f"/api/pmd/policies/{w.policy}"
    return {
        ("get", "/api/pmd/posts"): ("GET", "/api/pmd/posts", auth),
        ("post", "/api/pmd/action"): (
            "POST",
            "/api/pmd/action",
            auth | {"json": {"action": "hide", "post_ids": [w.posts[2].id]}},
        ),
        ("post", "/api/pmd/license"): (
            "POST",
            "/api/pmd/license",
            auth | {"json": {"post_ids": [w.posts[2].id], "license_id": None}},
        ),
        ("get", "/api/pmd/licenses"): ("GET", "/api/pmd/licenses", auth),
        ("get", "/api/pmd/actions"): ("GET", "/api/pmd/actions", auth),
        ("post", UNDO): ("POST", f"/api/pmd/actions/{uuid.uuid4()}/undo", auth),
        ("post", "/api/pmd/bdr"): (
            "POST",
            "/api/pmd/bdr",
            auth | {"json": {"post_ids": [w.posts[2].id]}},
        ),
        ("get", "/api/pmd/bdr"): ("GET", "/api/pmd/bdr", auth),
        ("get", BDR): ("GET", bdr, auth),
        ("delete", BDR): ("DELETE", f"/api/pmd/bdr/{uuid.uuid4()}", auth),
        ("get", DOWNLOAD): ("GET", f"{bdr}/download", auth),
        ("post", "/api/pmd/bdr/sse-ticket"): ("POST", "/api/pmd/bdr/sse-ticket", auth),
        ("get", SSE): ("GET", SSE, auth),
        ("post", "/api/pmd/exports"): ("POST", "/api/pmd/exports", auth | {"json": {}}),
        ("get", "/api/pmd/exports"): ("GET", "/api/pmd/exports", auth),
        ("get", EXPORT): ("GET", export, auth),
        ("delete", "/api/pmd/exports/schedule"): ("DELETE", "/api/pmd/exports/schedule", auth),
        ("delete", EXPORT): ("DELETE", f"/api/pmd/exports/{uuid.uuid4()}", auth),
        ("get", SUMS): ("GET", f"{export}/SHA256SUMS", auth),
        ("get", PART): ("GET", f"{export}/parts/1/download", auth),
        ("post", "/api/pmd/policies/preview"): (
            "POST",
            "/api/pmd/policies/preview",
            auth | {"json": POLICY},
        ),
        ("get", "/api/pmd/policies"): ("GET", "/api/pmd/policies", auth),
        ("post", "/api/pmd/policies"): (
            "POST",
            "/api/pmd/policies",
            auth | {"json": POLICY | {"expect_count": 0}},
        ),
        ("get", POLICY_URL): ("GET", policy, auth),
        ("patch", POLICY_URL): ("PATCH", policy, auth | {"json": {"name": "Renamed"}}),
        ("delete", POLICY_URL): ("DELETE", f"/api/pmd/policies/{uuid.uuid4()}", auth),
        ("post", POLICY_RUN): ("POST", f"{policy}/run", auth),
    }


def _as(user: UserRow | None, req: Req, **params: str) -> Req:
    """`req` sent by `user` (None: no credentials), with more query parameters."""
    method, url, kwargs = req
    kwargs = {k: v for k, v in kwargs.items() if k != "headers"}
    if user is not None:
        kwargs["headers"] = user.auth
    if params:
        kwargs["params"] = {**kwargs.get("params", {}), **params}
    return method, url, kwargs


def _bearer(token: str, req: Req) -> Req:
    method, url, kwargs = req
    return method, url, {**kwargs, "headers": {"Authorization": f"Bearer {token}"}}


def _body(req: Req, data: bytes | str, ctype: str = "application/json") -> Req:
    method, url, kwargs = req
    kwargs = {k: v for k, v in kwargs.items() if k != "json"}
    headers = {**kwargs.get("headers", {}), "Content-Type": ctype}
    return method, url, {**kwargs, "data": data, "headers": headers}


async def _generic(
    w: World, factory: Factory, key: tuple[str, str], req: Req, code: Code
) -> Req | None:
    """The request provoking `code` on any operation that declares it by kind."""
    target = {"target_sqid": w.owner.sqid}
    match code:
        case Code.TOKEN_MISSING:
            return _as(None, req)
        case Code.TOKEN_INVALID:
            return _bearer("not-a-token", req)
        case Code.TOKEN_EXPIRED:
            return _bearer(factory.token(w.owner.sqid, ttl=-7200), req)
        case Code.ACCOUNT_DEACTIVATED:
            return _as(w.deactivated, req)
        case Code.ACCOUNT_BANNED:
            return _as(w.banned, req)
        case Code.FORBIDDEN_ROLE:
            return _as(w.plain, req, **target)
        case Code.OWNER_PROTECTED:
            return _as(w.moderator, req, target_sqid=w.site_owner.sqid)
        case Code.MODERATOR_PROTECTED:
            return _as(w.moderator, req, target_sqid=w.moderator2.sqid)
        case Code.TARGET_NOT_FOUND:
            return _as(w.moderator, req, target_sqid="zzzzzzzzzz")
        case Code.INVALID_TEXT:
            return _as(w.owner, req, target_sqid="a\x00b")
        case Code.MALFORMED_JSON:
            return _body(req, "{")
        case Code.DUPLICATE_KEY if "json" not in req[2]:
            method, url, kwargs = _as(w.owner, req)
            return method, url, {**kwargs, "params": [("target_sqid", w.owner.sqid)] * 2}
        case Code.DUPLICATE_KEY:
            sent = msgspec.json.encode(req[2].get("json", {})).decode()
            twice = '"target_sqid": null, "target_sqid": null'
            return _body(req, sent[:-1] + ("," if sent != "{}" else "") + twice + "}")
        case Code.VALIDATION_FAILED:
            return _body(req, "[]")
        case Code.UNSUPPORTED_MEDIA_TYPE:
            return _body(req, "{}", "text/plain")
        case Code.BODY_TOO_LARGE:
            return _body(req, "[" + "0," * 200_000 + "0]")
        case Code.INVALID_QUERY:
            return _as(w.owner, req, limit="many")
        case Code.INVALID_ID:
            method, url, kwargs = req
            parts = url.split("/")
            parts[4] = "not-an-id"  # /api/pmd/<what>/<id>/…
            return method, "/".join(parts), kwargs
        case Code.TICKET_INVALID:
            return _as(None, req, ticket="A" * 43)
        case Code.TICKET_WRONG_DOWNLOAD:
            ticket = await (w.mint(bdr_id=w.bdr) if key[1] == SSE else w.mint())
            return _as(None, req, ticket=ticket)
        case Code.TARGET_MISMATCH if key[1] in (DOWNLOAD, SSE, SUMS, PART):
            ids = {DOWNLOAD: {"bdr_id": w.bdr}, SSE: {}}.get(key[1], {"export_id": w.export})
            return _as(None, req, ticket=await w.mint(**ids), target_sqid=w.plain.sqid)
        case Code.TARGET_MISMATCH:
            method, url, kwargs = _as(w.owner, req, target_sqid=w.owner.sqid)
            return method, url, {**kwargs, "json": {**kwargs["json"], "target_sqid": w.plain.sqid}}
        case Code.EXPORT_OWNER_ONLY:
            return _as(w.moderator, req, **target)
    return None


Provoke = Callable[[], Awaitable[Req]]
POLICY = {"name": "Old", "action": "hide", "older_than_days": 1}
POLICY_URL = "/api/pmd/policies/{id}"
POLICY_RUN = "/api/pmd/policies/{id}/run"


def _own(
    client: Client, w: World, factory: Factory, settings: Settings
) -> dict[tuple[str, str, Code], Provoke]:
    """The requests provoking each operation's own codes (some after a step that sets it up)."""
    o, p = w.owner, w.posts

    def post(url: str, body: dict[str, Any], user: UserRow = o) -> Req:
        return "POST", url, {"headers": user.auth, "json": body}

    def get(url: str, user: UserRow = o, **params: str) -> Req:
        return "GET", url, {"headers": user.auth, "params": params}

    async def now(req: Req) -> Req:
        return req

    async def restore_by_moderator() -> Req:
        resp = await client.post(
            "/api/pmd/action",
            headers=w.moderator.auth,
            params={"target_sqid": o.sqid},
            json={"action": "delete", "post_ids": [p[1].id]},
        )
        assert resp.status == 200, await resp.text()
        return post("/api/pmd/action", {"action": "restore", "post_ids": [p[1].id]})

    async def nd_license() -> Req:
        license_id = await factory.license("CC-BY-ND-4.0")
        resp = await client.post(
            "/api/pmd/license",
            headers=o.auth,
            json={"post_ids": [p[2].id], "license_id": license_id},
        )
        assert resp.status == 200, await resp.text()
        return post(
            "/api/pmd/action", {"action": "remixable", "post_ids": [p[2].id], "value": True}
        )

    async def paced(url: str, body: Callable[[], dict[str, Any]]) -> Req:
        pacer = await factory.user()
        mine = await factory.post(pacer)
        req = post(url, body() | ({"post_ids": [mine.id]} if "/undo" not in url else {}), pacer)
        # Until the minute's turns are spent: a minute that ends meanwhile starts a new count.
        for _ in range(3 * settings.bulk_actions_per_minute):
            method, to, kwargs = req
            if (await client.request(method, to, **kwargs)).status == 429:
                break
        return req

    async def undone_twice() -> Req:
        mine = await factory.post(o)
        undo = (await acted(client, o, "hide", [mine.id]))["undo"]
        resp = await client.post(undo, headers=o.auth)
        assert resp.status == 200, await resp.text()
        return post(undo, {})

    async def undo_old() -> Req:
        mine = await factory.post(o)
        undo = (await acted(client, o, "hide", [mine.id]))["undo"]
        action_id = undo.split("/")[-2]
        await factory.pool.execute(
            "UPDATE bulk_actions SET created_at = now() - interval '2 days' WHERE id = $1",
            uuid.UUID(action_id),
        )
        return post(undo, {})

    async def bdr_by_moderator() -> Req:
        item = await request_bdr(client, w.moderator, [p[0].id], target_sqid=o.sqid)
        return "DELETE", f"/api/pmd/bdr/{item['id']}", {"headers": o.auth}

    async def day_used() -> Req:
        heavy = await factory.user()
        mine = await factory.post(heavy)
        for _ in range(settings.bdr_daily_limit):
            await request_bdr(client, heavy, [mine.id])
        return post("/api/pmd/bdr", {"post_ids": [mine.id]}, heavy)

    async def pending_download() -> Req:
        someone = await factory.user()
        item = await request_bdr(client, someone, [(await factory.post(someone)).id])
        return get(f"/api/pmd/bdr/{item['id']}/download", someone)

    async def cancelled_download() -> Req:
        someone = await factory.user()
        item = await request_bdr(client, someone, [(await factory.post(someone)).id])
        assert (
            await client.delete(f"/api/pmd/bdr/{item['id']}", headers=someone.auth)
        ).status == 204
        return get(f"/api/pmd/bdr/{item['id']}/download", someone)

    async def removed_download() -> Req:
        assert (await client.delete(f"/api/pmd/bdr/{w.bdr}", headers=o.auth)).status == 204
        return get(f"/api/pmd/bdr/{w.bdr}/download")

    async def removed_part() -> Req:
        assert (await client.delete(f"/api/pmd/exports/{w.export}", headers=o.auth)).status == 204
        return get(f"/api/pmd/exports/{w.export}/parts/1/download")

    async def running_export() -> Req:
        exporter = await factory.user()
        await factory.post(exporter)
        resp = await client.post("/api/pmd/exports", headers=exporter.auth, json={})
        assert resp.status == 202, await resp.text()
        return post("/api/pmd/exports", {}, exporter)

    async def paused_policy_on() -> Req:
        url = f"/api/pmd/policies/{w.policy}"
        resp = await client.patch(url, headers=o.auth, json={"enabled": False})
        assert resp.status == 200, await resp.text()
        return "PATCH", url, {"headers": o.auth, "json": {"enabled": True, "expect_count": 99}}

    unknown = uuid.uuid4()
    download = f"/api/pmd/bdr/{w.bdr}/download"
    return {
        ("post", "/api/pmd/action", Code.POSTS_NOT_OWNED): lambda: now(
            post("/api/pmd/action", {"action": "hide", "post_ids": [w.other_post.id]})
        ),
        ("post", "/api/pmd/license", Code.POSTS_NOT_OWNED): lambda: now(
            post("/api/pmd/license", {"post_ids": [w.other_post.id], "license_id": None})
        ),
        ("post", "/api/pmd/bdr", Code.POSTS_NOT_OWNED): lambda: now(
            post("/api/pmd/bdr", {"post_ids": [w.other_post.id]})
        ),
        ("post", "/api/pmd/action", Code.POSTS_NOT_RESTORABLE): lambda: now(
            post("/api/pmd/action", {"action": "restore", "post_ids": [w.other_post.id]})
        ),
        ("post", "/api/pmd/action", Code.POSTS_DELETED_BY_MODERATOR): restore_by_moderator,
        ("post", "/api/pmd/action", Code.NO_DERIVATIVES_LICENSE): nd_license,
        ("post", "/api/pmd/action", Code.INVALID_TAGS): lambda: now(
            post("/api/pmd/action", {"action": "tags", "post_ids": [p[0].id]})
        ),
        ("post", "/api/pmd/action", Code.VALUE_REQUIRED): lambda: now(
            post("/api/pmd/action", {"action": "remixable", "post_ids": [p[0].id]})
        ),
        ("post", "/api/pmd/license", Code.UNKNOWN_LICENSE): lambda: now(
            post("/api/pmd/license", {"post_ids": [p[0].id], "license_id": 2_000_000_000})
        ),
        ("post", "/api/pmd/action", Code.TOO_MANY_POSTS): lambda: now(
            post("/api/pmd/action", {"action": "hide", "filter": {}, "expect_count": 3})
        ),
        ("post", "/api/pmd/license", Code.TOO_MANY_POSTS): lambda: now(
            post("/api/pmd/license", {"license_id": None, "filter": {}, "expect_count": 3})
        ),
        ("post", "/api/pmd/action", Code.INVALID_FILTER): lambda: now(
            post(
                "/api/pmd/action",
                {"action": "hide", "filter": {"created_after": "soon"}, "expect_count": 1},
            )
        ),
        ("post", "/api/pmd/license", Code.INVALID_FILTER): lambda: now(
            post(
                "/api/pmd/license",
                {"license_id": None, "filter": {"created_after": "soon"}, "expect_count": 1},
            )
        ),
        ("post", "/api/pmd/action", Code.COUNT_CHANGED): lambda: now(
            post(
                "/api/pmd/action",
                {"action": "hide", "filter": {"hashtag": ["none-such"]}, "expect_count": 1},
            )
        ),
        ("post", "/api/pmd/license", Code.COUNT_CHANGED): lambda: now(
            post(
                "/api/pmd/license",
                {"license_id": None, "filter": {"hashtag": ["none-such"]}, "expect_count": 1},
            )
        ),
        ("post", "/api/pmd/action", Code.RATE_LIMITED): lambda: paced(
            "/api/pmd/action", lambda: {"action": "hide"}
        ),
        ("post", "/api/pmd/license", Code.RATE_LIMITED): lambda: paced(
            "/api/pmd/license", lambda: {"license_id": None}
        ),
        ("post", UNDO, Code.RATE_LIMITED): lambda: paced(
            f"/api/pmd/actions/{uuid.uuid4()}/undo", dict
        ),
        ("post", POLICY_RUN, Code.RATE_LIMITED): lambda: paced(
            f"/api/pmd/policies/{uuid.uuid4()}/run", dict
        ),
        ("get", "/api/pmd/posts", Code.INVALID_CURSOR): lambda: now(
            get("/api/pmd/posts", cursor="nonsense")
        ),
        ("get", "/api/pmd/actions", Code.INVALID_CURSOR): lambda: now(
            get("/api/pmd/actions", cursor="nonsense")
        ),
        ("get", "/api/pmd/posts", Code.INVALID_SORT): lambda: now(
            get("/api/pmd/posts", sort="colour")
        ),
        ("get", "/api/pmd/posts", Code.INVALID_FILTER): lambda: now(
            get("/api/pmd/posts", created_after="soon")
        ),
        ("post", UNDO, Code.ACTION_NOT_FOUND): lambda: now(
            post(f"/api/pmd/actions/{unknown}/undo", {})
        ),
        ("post", UNDO, Code.ALREADY_UNDONE): undone_twice,
        ("post", UNDO, Code.UNDO_EXPIRED): undo_old,
        ("post", "/api/pmd/bdr", Code.BDR_DAILY_LIMIT): day_used,
        ("get", BDR, Code.BDR_NOT_FOUND): lambda: now(get(f"/api/pmd/bdr/{unknown}")),
        ("delete", BDR, Code.BDR_NOT_FOUND): lambda: now(
            ("DELETE", f"/api/pmd/bdr/{unknown}", {"headers": o.auth})
        ),
        ("get", DOWNLOAD, Code.BDR_NOT_FOUND): lambda: now(get(f"/api/pmd/bdr/{unknown}/download")),
        ("post", "/api/pmd/bdr/sse-ticket", Code.BDR_NOT_FOUND): lambda: now(
            (
                "POST",
                "/api/pmd/bdr/sse-ticket",
                {"headers": o.auth, "params": {"bdr_id": str(unknown)}},
            )
        ),
        ("post", "/api/pmd/bdr/sse-ticket", Code.EXPORT_NOT_FOUND): lambda: now(
            (
                "POST",
                "/api/pmd/bdr/sse-ticket",
                {"headers": o.auth, "params": {"export_id": str(unknown)}},
            )
        ),
        ("post", "/api/pmd/bdr/sse-ticket", Code.INVALID_ID): lambda: now(
            ("POST", "/api/pmd/bdr/sse-ticket", {"headers": o.auth, "params": {"bdr_id": "x"}})
        ),
        ("post", "/api/pmd/bdr/sse-ticket", Code.INVALID_QUERY): lambda: now(
            (
                "POST",
                "/api/pmd/bdr/sse-ticket",
                {"headers": o.auth, "params": {"bdr_id": w.bdr, "export_id": w.export}},
            )
        ),
        ("post", "/api/pmd/bdr/sse-ticket", Code.EXPORT_OWNER_ONLY): lambda: now(
            (
                "POST",
                "/api/pmd/bdr/sse-ticket",
                {
                    "headers": w.moderator.auth,
                    "params": {"export_id": w.export, "target_sqid": o.sqid},
                },
            )
        ),
        ("delete", BDR, Code.BDR_MADE_BY_MODERATOR): bdr_by_moderator,
        ("get", DOWNLOAD, Code.BDR_NOT_READY): pending_download,
        ("get", DOWNLOAD, Code.BDR_NO_FILE): cancelled_download,
        ("get", DOWNLOAD, Code.PRECONDITION_FAILED): lambda: now(
            ("GET", download, {"headers": o.auth | {"If-Match": '"other"'}})
        ),
        ("get", DOWNLOAD, Code.RANGE_NOT_SATISFIABLE): lambda: now(
            ("GET", download, {"headers": o.auth | {"Range": "bytes=-0"}})
        ),
        ("get", PART, Code.PRECONDITION_FAILED): lambda: now(
            (
                "GET",
                f"/api/pmd/exports/{w.export}/parts/1/download",
                {"headers": o.auth | {"If-Match": '"other"'}},
            )
        ),
        ("get", PART, Code.RANGE_NOT_SATISFIABLE): lambda: now(
            (
                "GET",
                f"/api/pmd/exports/{w.export}/parts/1/download",
                {"headers": o.auth | {"Range": "bytes=-0"}},
            )
        ),
        ("post", "/api/pmd/exports", Code.INVALID_PART_SIZE): lambda: now(
            post("/api/pmd/exports", {"part_bytes": 1})
        ),
        ("post", "/api/pmd/exports", Code.INVALID_SINCE): lambda: now(
            post("/api/pmd/exports", {"since": "yesterday"})
        ),
        ("post", "/api/pmd/exports", Code.INVALID_SCHEDULE): lambda: now(
            post("/api/pmd/exports", {"repeat_every_days": 7})
        ),
        ("post", "/api/pmd/exports", Code.INVALID_LAYOUT): lambda: now(
            post("/api/pmd/exports", {"layout": "mastodon"})
        ),
        ("post", "/api/pmd/exports", Code.EXPORT_RUNNING): running_export,
        ("post", "/api/pmd/exports", Code.EXPORT_COOLDOWN): lambda: now(
            post("/api/pmd/exports", {})
        ),
        ("post", "/api/pmd/exports", Code.NOTHING_TO_EXPORT): lambda: now(
            post("/api/pmd/exports", {}, w.empty)
        ),
        ("get", EXPORT, Code.EXPORT_NOT_FOUND): lambda: now(get(f"/api/pmd/exports/{unknown}")),
        ("delete", EXPORT, Code.EXPORT_NOT_FOUND): lambda: now(
            ("DELETE", f"/api/pmd/exports/{unknown}", {"headers": o.auth})
        ),
        ("get", SUMS, Code.EXPORT_NOT_FOUND): lambda: now(
            get(f"/api/pmd/exports/{unknown}/SHA256SUMS")
        ),
        ("get", PART, Code.EXPORT_NOT_FOUND): lambda: now(
            get(f"/api/pmd/exports/{unknown}/parts/1/download")
        ),
        ("get", PART, Code.PART_NOT_FOUND): lambda: now(
            get(f"/api/pmd/exports/{w.export}/parts/99/download")
        ),
        ("delete", "/api/pmd/exports/schedule", Code.SCHEDULE_NOT_FOUND): lambda: now(
            ("DELETE", "/api/pmd/exports/schedule", {"headers": o.auth})
        ),
        ("post", "/api/pmd/policies/preview", Code.INVALID_FILTER): lambda: now(
            post("/api/pmd/policies/preview", POLICY | {"filter": {"created_after": "soon"}})
        ),
        ("post", "/api/pmd/policies", Code.INVALID_FILTER): lambda: now(
            post(
                "/api/pmd/policies",
                POLICY | {"filter": {"created_after": "soon"}, "expect_count": 0},
            )
        ),
        ("post", "/api/pmd/policies/preview", Code.INVALID_TAGS): lambda: now(
            post("/api/pmd/policies/preview", POLICY | {"keep": {"hashtags": ["#"]}})
        ),
        ("post", "/api/pmd/policies", Code.INVALID_TAGS): lambda: now(
            post("/api/pmd/policies", POLICY | {"keep": {"hashtags": [""]}, "expect_count": 0})
        ),
        ("patch", POLICY_URL, Code.INVALID_TAGS): lambda: now(
            (
                "PATCH",
                f"/api/pmd/policies/{w.policy}",
                {"headers": o.auth, "json": {"keep": {"hashtags": [" # "]}}},
            )
        ),
        ("post", "/api/pmd/policies", Code.COUNT_CHANGED): lambda: now(
            post("/api/pmd/policies", POLICY | {"expect_count": 99})
        ),
        ("patch", POLICY_URL, Code.INVALID_FILTER): lambda: now(
            (
                "PATCH",
                f"/api/pmd/policies/{w.policy}",
                {"headers": o.auth, "json": {"filter": {"created_after": "soon"}}},
            )
        ),
        ("patch", POLICY_URL, Code.COUNT_CHANGED): paused_policy_on,
        # Last: these remove the owner's ready download and export.
        ("get", DOWNLOAD, Code.BDR_EXPIRED): removed_download,
        ("get", PART, Code.EXPORT_EXPIRED): removed_part,
    }


_KINDS = {"integer": int, "string": str, "boolean": bool, "integers": list, "object": dict}


async def _check(client: Client, key: tuple[str, str], code: Code, req: Req) -> str | None:
    """What is wrong with the answer to `req`, meant to carry `code` (None: nothing)."""
    method, url, kwargs = req
    resp = await client.request(method, url, allow_redirects=False, **kwargs)
    text = await resp.text()
    where = f"{key[0].upper()} {key[1]} {code}"
    entry = TABLE[code]
    if resp.status != entry.status:
        return f"{where}: {resp.status} {text[:300]}"
    body = msgspec.json.decode(text)
    if body.get("code") != entry.code or body.get("detail") is None:
        return f"{where}: carries {body.get('code')!r}"
    details = body.get("details")
    if not isinstance(details, dict) or details.get("reason") != code:
        return f"{where}: details {details!r}"
    for name, kind in entry.details.items():
        value = details.get(name)
        if not isinstance(value, _KINDS[kind]) or (kind != "boolean" and isinstance(value, bool)):
            return f"{where}: details.{name} is {value!r}, not {kind}"
    return None


async def test_every_declared_code_is_provoked_and_carried(
    aiohttp_client: AiohttpClient, factory: Factory, settings: Settings, redis_clean: None
) -> None:
    # Small enough to reach: a filter over the owner's 3 posts exceeds one action's posts, a
    # day's downloads and a minute's actions are few.
    settings = msgspec.structs.replace(
        settings, bulk_max_posts=2, bdr_daily_limit=2, bulk_actions_per_minute=25
    )
    client: Client = await aiohttp_client(create_app(settings))
    w = await _world(client, factory, settings)
    doc = await (await client.get("/openapi.json")).json()
    declared = {
        (m, p, Code(c))
        for (m, p, _), codes in declared_codes(doc).items()
        for c in codes
        if p.startswith("/api/pmd/")
    }
    base = _base(w)
    own = _own(client, w, factory, settings)
    wrong, provoked = [], set()
    for m, p, code in sorted(
        declared, key=lambda d: (d[2] in (Code.BDR_EXPIRED, Code.EXPORT_EXPIRED), d)
    ):
        if (m, p, code) in own:
            req: Req | None = await own[(m, p, code)]()
        else:
            req = await _generic(w, factory, (m, p), base[(m, p)], code)
        if req is None:
            continue
        problem = await _check(client, (m, p), code, req)
        if problem is not None:
            wrong.append(problem)
        provoked.add((m, p, code))
    assert not wrong, "\n".join(wrong)
    left = {(m, p, c) for m, p, c in declared - provoked if c not in ELSEWHERE | UNPROVOKED}
    assert not left, sorted(left)
    assert {c for _, _, c in declared - provoked} == set(ELSEWHERE) | set(UNPROVOKED)

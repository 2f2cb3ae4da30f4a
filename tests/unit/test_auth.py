from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.features.posts.filters import EMPTY_DIGEST
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from tests.helpers import SECRET, assert_problem

Client = TestClient[Any, Any]


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


async def test_valid_token_lists_posts(client: Client, factory: Factory) -> None:
    user = await factory.user()
    resp = await client.get("/api/pmd/posts", headers=user.auth)
    assert resp.status == 200
    assert (await resp.json()) == {
        "items": [],
        "next_cursor": None,
        "total_count": 0,
        "match_digest": EMPTY_DIGEST,
        "target": {"public_sqid": user.sqid, "handle": user.handle},
    }


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("none", 401),
        ("not_bearer", 401),
        ("malformed", 401),
        ("bad_signature", 401),
        ("alg_none", 401),
        ("hs512_right_key", 401),
        ("expired", 401),
        ("no_exp", 401),
        ("unknown_sub", 401),
        ("lone_surrogate_sub", 401),
        ("deactivated", 403),
        ("banned", 403),
        ("banned_for_good", 403),
    ],
)
# The hs512 case signs with the test secret on purpose, to show other algorithms are refused.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_auth_failures(client: Client, factory: Factory, case: str, expected: int) -> None:
    user = await factory.user()
    now = int(time.time())
    claims = {"sub": user.sqid, "exp": now + 600, "roles": ["user"]}
    headers: dict[str, str] = {}
    if case == "not_bearer":
        headers = {"Authorization": f"Basic {user.token}"}
    elif case == "malformed":
        headers = {"Authorization": "Bearer not.a.jwt"}
    elif case == "bad_signature":
        headers = {"Authorization": f"Bearer {jwt.encode(claims, 'w' * 40, algorithm='HS256')}"}
    elif case == "alg_none":
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
        headers = {"Authorization": f"Bearer {token}"}
    elif case == "hs512_right_key":
        headers = {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS512')}"}
    elif case == "expired":
        # Past the 30 s leeway given to clock skew.
        headers = {"Authorization": f"Bearer {factory.token(user.sqid, ttl=-40)}"}
    elif case == "no_exp":
        token = jwt.encode({"sub": user.sqid}, SECRET, algorithm="HS256")
        headers = {"Authorization": f"Bearer {token}"}
    elif case == "unknown_sub":
        headers = {"Authorization": f"Bearer {factory.token('nobodyhere')}"}
    elif case == "lone_surrogate_sub":  # JSON's "\ud800": no database value, nor UTF-8
        headers = {"Authorization": f"Bearer {factory.token(chr(0xD800))}"}
    elif case == "deactivated":
        await factory.pool.execute("UPDATE users SET deactivated = true WHERE id = $1", user.id)
        headers = user.auth
    elif case == "banned":
        until = datetime.now(UTC) + timedelta(days=1)
        await factory.pool.execute(
            "UPDATE users SET banned_until = $2 WHERE id = $1", user.id, until
        )
        headers = user.auth
    elif case == "banned_for_good":  # the host's stored form of a permanent ban
        until = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
        await factory.pool.execute(
            "UPDATE users SET banned_until = $2 WHERE id = $1", user.id, until
        )
        headers = user.auth
    resp = await client.get("/api/pmd/posts", headers=headers)
    body = await assert_problem(resp, expected)
    if case.startswith("banned"):
        assert body["code"] == "account_banned"
        assert datetime.fromisoformat(body["details"]["banned_until"]) == until
        assert body["details"]["permanent"] is (case == "banned_for_good")
    elif case == "deactivated":
        assert body["code"] == "account_deactivated" and body["details"] == {
            "reason": "account_deactivated"
        }
    if expected == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_expired_ban_lets_user_in(client: Client, factory: Factory) -> None:
    user = await factory.user(banned_until=datetime.now(UTC) - timedelta(minutes=1))
    resp = await client.get("/api/pmd/posts", headers=user.auth)
    assert resp.status == 200


async def test_target_rules(client: Client, factory: Factory) -> None:
    alice = await factory.user("alice")
    bob = await factory.user("bob")
    mod = await factory.user("mod", roles=["user", "moderator"])
    owner = await factory.user("boss", roles=["owner"])
    await factory.post(bob, title="bob's art")

    async def posts_of(target: str, caller: UserRow) -> Any:
        return await client.get(f"/api/pmd/posts?target_sqid={target}", headers=caller.auth)

    # A plain user may not look at someone else's posts.
    await assert_problem(await posts_of(bob.sqid, alice), 403)
    # Naming yourself is fine.
    assert (await posts_of(alice.sqid, alice)).status == 200
    # A moderator may, and sees bob's posts.
    resp = await posts_of(bob.sqid, mod)
    assert resp.status == 200
    assert [i["title"] for i in (await resp.json())["items"]] == ["bob's art"]
    # Unknown target, also when it could never be a sqid; a NUL is refused as text.
    for junk in ("zzzzzzzz", "x" * 300, "%F0%9F%90%89"):
        await assert_problem(await posts_of(junk, mod), 404)
    for junk in ("%00", "a%00b"):
        assert (await assert_problem(await posts_of(junk, mod), 400))["errors"][0] == {
            "field": "target_sqid",
            "message": "contains a NUL character (U+0000)",
        }
    # An owner's posts are off limits to moderators, but not to the owner.
    await assert_problem(await posts_of(owner.sqid, mod), 403)
    assert (await posts_of(bob.sqid, owner)).status == 200
    assert (await posts_of(owner.sqid, owner)).status == 200
    # A moderator's posts are off limits to other moderators; the owner and the moderator may.
    mod2 = await factory.user("mod2", roles=["moderator"])
    problem = await assert_problem(await posts_of(mod2.sqid, mod), 403)
    assert "moderator" in problem["detail"]
    for caller in (owner, mod2):
        assert (await posts_of(mod2.sqid, caller)).status == 200


async def test_roles_come_from_the_database_not_the_token(client: Client, factory: Factory) -> None:
    alice = await factory.user()
    bob = await factory.user()
    forged = jwt.encode(
        {"sub": alice.sqid, "exp": int(time.time()) + 60, "roles": ["moderator"]},
        SECRET,
        algorithm="HS256",
    )
    resp = await client.get(
        f"/api/pmd/posts?target_sqid={bob.sqid}", headers={"Authorization": f"Bearer {forged}"}
    )
    await assert_problem(resp, 403)


async def test_audience_and_issuer_are_checked_when_configured(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    user = await factory.user()
    exp = int(time.time()) + 60

    def token(**claims: Any) -> dict[str, str]:
        body = {"sub": user.sqid, "exp": exp, "type": "access", **claims}
        return {"Authorization": f"Bearer {jwt.encode(body, SECRET, algorithm='HS256')}"}

    # Unconfigured (the host's case): neither claim is needed, and one present is not refused.
    client = await aiohttp_client(create_app(settings))
    for headers in (token(), token(aud="elsewhere", iss="someone")):
        assert (await client.get("/api/pmd/posts", headers=headers)).status == 200

    strict = replace(settings, jwt_audience="pmd", jwt_issuer="https://makapix.club")
    client = await aiohttp_client(create_app(strict))
    ok = token(aud=["web", "pmd"], iss="https://makapix.club")
    assert (await client.get("/api/pmd/posts", headers=ok)).status == 200
    for claims, word in [
        ({"iss": "https://makapix.club"}, "aud"),
        ({"aud": "web", "iss": "https://makapix.club"}, "aud"),
        ({"aud": "pmd"}, "iss"),
        ({"aud": "pmd", "iss": "https://evil.example"}, "iss"),
    ]:
        resp = await client.get("/api/pmd/posts", headers=token(**claims))
        body = await assert_problem(resp, 401)
        assert word in body["detail"], (claims, body["detail"])

"""The posts list's cursor carries the walk's total, signed: a total a client wrote into a
cursor is never shown back (an altered cursor is a 400, an unsigned one is counted again)."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp.test_utils import TestClient

from support.seeding import Factory
from tests.helpers import assert_problem, posts_page

Client = TestClient[Any, Any]


def _raw(token: str) -> str:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def _token(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


async def test_a_forged_total_is_never_echoed(client: Client, factory: Factory) -> None:
    user = await factory.user()
    await factory.posts_bulk(user, 6)
    first = await posts_page(client, user, "limit=2")
    assert first["total_count"] == 6
    kind, key, post_id, total, mac = _raw(first["next_cursor"]).split(":")
    assert total == "6" and mac.startswith("m")
    # The total altered, the signature kept: refused.
    forged = _token(":".join((kind, key, post_id, "999999", mac)))
    resp = await client.get(f"/api/pmd/posts?limit=2&cursor={forged}", headers=user.auth)
    assert (await assert_problem(resp, 400))["errors"][0]["field"] == "cursor"
    # Unsigned (the previous release's form), it is counted again, whatever it says.
    unsigned = _token(":".join((kind, key, post_id, "999999")))
    page = await posts_page(client, user, f"limit=2&cursor={unsigned}")
    assert page["total_count"] == 6 and len(page["items"]) == 2
    # The genuine cursor walks on, carrying its total.
    page = await posts_page(client, user, f"limit=2&cursor={first['next_cursor']}")
    assert page["total_count"] == 6


async def test_a_cursor_is_its_owners_listings_only(client: Client, factory: Factory) -> None:
    user, other = await factory.user(), await factory.user()
    await factory.posts_bulk(user, 4)
    await factory.posts_bulk(other, 4)
    first = await posts_page(client, user, "limit=2")
    resp = await client.get(
        f"/api/pmd/posts?limit=2&cursor={first['next_cursor']}", headers=other.auth
    )
    await assert_problem(resp, 400)

"""GET /api/pmd/posts against real PostgreSQL: eligibility, keyset pagination, counts, and
every bad query value (the filters' and the orders' too) a 400 naming its parameter."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import msgspec
import pytest
from aiohttp.test_utils import TestClient

from pmd_service.features.posts import listing
from pmd_service.features.posts.cursor import Cursor
from pmd_service.features.posts.schemas import ListedPost, PostItem, PostPage
from pmd_service.features.posts.sorting import default_sort
from support.seeding import Factory, UserRow
from tests.helpers import SECRET, assert_problem, logging_pool, posts_page

Client = TestClient[Any, Any]

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def _all_pages(
    client: Client, user: UserRow, limit: int, extra: str = ""
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every item in order, every page body), following next_cursor to the end."""
    items: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = f"limit={limit}{extra}" + (f"&cursor={cursor}" if cursor else "")
        page = await posts_page(client, user, query)
        pages.append(page)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
        assert len(pages) < 1000, "pagination does not terminate"


def _key(item: dict[str, Any], field: str = "created_at") -> tuple[datetime, int]:
    return datetime.fromisoformat(item[field]), item["id"]


async def test_pagination_over_1300_posts_with_shared_timestamps(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    other = await factory.user()
    eligible: list[int] = []
    excluded: list[int] = []
    # 13 timestamps; on each, 100 artworks plus playlists and deleted posts interleaved by id.
    for n in range(13):
        at = T0 + timedelta(minutes=n)
        eligible += await factory.posts_bulk(user, 60, created_at=at)
        excluded += await factory.posts_bulk(user, 3, created_at=at, kind="playlist")
        gone = await factory.posts_bulk(user, 4, created_at=at)
        await factory.pool.execute(
            "UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now()"
            " WHERE id = ANY($1::int[])",
            gone,
        )
        excluded += gone
        eligible += await factory.posts_bulk(user, 40, created_at=at)
        excluded += await factory.posts_bulk(other, 2, created_at=at)
    # Hidden posts are still the owner's to manage: they are listed.
    await factory.pool.execute(
        "UPDATE posts SET hidden_by_user = true WHERE id = ANY($1::int[])", eligible[::7]
    )
    assert len(eligible) == 1300

    # 97 does not divide 100: page boundaries fall inside every group of equal timestamps.
    for limit in (97, 512):
        items, pages = await _all_pages(client, user, limit)
        ids = [i["id"] for i in items]
        assert len(ids) == len(set(ids)), f"limit={limit}: a post was listed twice"
        assert sorted(ids) == eligible, f"limit={limit}: posts skipped or foreign ones listed"
        keys = [_key(i) for i in items]
        assert keys == sorted(keys, reverse=True), "not newest first with id as tie-break"
        assert all(p["total_count"] == 1300 for p in pages)
        assert all(len(p["items"]) == limit for p in pages[:-1])
        assert pages[-1]["next_cursor"] is None


async def test_many_posts_on_one_timestamp_are_never_skipped_or_repeated(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    ids = await factory.posts_bulk(user, 300, created_at=T0)
    items, pages = await _all_pages(client, user, 7)
    assert [i["id"] for i in items] == sorted(ids, reverse=True)
    assert len(pages) == 43  # 42 full pages of 7 and one of 6
    assert {i["created_at"] for i in items} == {items[0]["created_at"]}


async def test_default_limit_is_512_and_last_page_has_no_cursor(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    await factory.posts_bulk(user, 515)
    first = await posts_page(client, user)
    assert len(first["items"]) == 512
    assert first["total_count"] == 515
    assert first["next_cursor"]
    second = await posts_page(client, user, f"cursor={first['next_cursor']}")
    assert len(second["items"]) == 3
    assert second["next_cursor"] is None
    assert second["total_count"] == 515


async def test_each_page_counts_the_posts_as_they_are_then(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    await factory.posts_bulk(user, 12, created_at=T0)
    first = await posts_page(client, user, "limit=5")
    assert first["total_count"] == 12
    await factory.posts_bulk(user, 3, created_at=T0 - timedelta(days=1))  # older: later pages
    second = await posts_page(client, user, f"limit=5&cursor={first['next_cursor']}")
    third = await posts_page(client, user, f"limit=5&cursor={second['next_cursor']}")
    assert [len(p["items"]) for p in (first, second, third)] == [5, 5, 5]
    assert second["total_count"] == third["total_count"] == 15


async def test_exactly_full_page_ends_the_listing(client: Client, factory: Factory) -> None:
    user = await factory.user()
    await factory.posts_bulk(user, 10)
    page = await posts_page(client, user, "limit=10")
    assert len(page["items"]) == 10
    assert page["next_cursor"] is None, "a cursor to an empty page costs the client a request"


async def test_playlists_deleted_and_foreign_posts_are_never_listed_nor_counted(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    other = await factory.user()
    keep = await factory.post(user, title="keep", created_at=T0)
    hidden = await factory.post(user, title="hidden", created_at=T0, hidden_by_mod=True)
    await factory.post(user, title="playlist", kind="playlist")
    await factory.post(
        user, title="deleted", deleted_by_user=True, deleted_by_user_date=datetime.now(UTC)
    )
    # Deleted long ago: in neither list.
    await factory.post(
        user,
        title="deleted long ago",
        deleted_by_user=True,
        deleted_by_user_date=datetime.now(UTC) - timedelta(days=30),
    )
    await factory.post(other, title="someone else's")

    page = await posts_page(client, user)
    assert [i["title"] for i in page["items"]] == ["hidden", "keep"]
    assert [i["id"] for i in page["items"]] == [hidden.id, keep.id]
    assert page["total_count"] == 2
    assert page["items"][0]["hidden_by_mod"] is True
    assert page["items"][0]["hidden_by_user"] is False

    # An empty page past the end still reports the total.
    cursor = Cursor(False, T0 - timedelta(days=1), 1).encode()
    past = await posts_page(client, user, f"cursor={cursor}")
    assert past == {
        "items": [],
        "next_cursor": None,
        "total_count": 2,
        "match_digest": None,
        "target": {"public_sqid": user.sqid, "handle": user.handle},
    }


async def test_item_fields_and_counts_against_hand_built_data(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    fan = await factory.user()
    cc = await factory.license("CC-BY-4.0")
    busy = await factory.post(
        user,
        title="busy",
        description="lots going on",
        created_at=T0 + timedelta(hours=1),
        width=64,
        height=32,
        frame_count=12,
        art_url="/vault/ab/x.gif",
        view_count=42,
        license_id=cc,
        fmt="gif",
        hashtags=["wip", "cats"],
        mod_hashtags=["cats"],
        remixable=False,
        mkpx_file_bytes=4096,
    )
    await factory.pool.execute(
        "INSERT INTO post_files (post_id, format, file_bytes, is_native)"
        " VALUES ($1, 'webp', 900, false), ($1, 'png', 1200, false)",
        busy.id,
    )
    quiet = await factory.post(user, title="quiet", created_at=T0)
    # On another post, to prove counts are per post and not per owner.
    for _ in range(3):
        await factory.reaction(busy, fan, "❤️")
    await factory.reaction(busy, None, "🔥")
    await factory.comment(busy, fan, "visible 1")
    top = await factory.comment(busy, None, "visible 2 (anonymous)")
    await factory.comment(busy, fan, "a visible reply", parent_id=top)
    await factory.comment(busy, fan, "hidden by a moderator", hidden_by_mod=True)
    await factory.comment(busy, fan, "deleted by its author", deleted_by_owner=True)
    await factory.comment(busy, fan, "deleted by a moderator", deleted_by_mod=True)
    await factory.comment(quiet, fan, "the only comment on quiet", hidden_by_mod=True)

    items = (await posts_page(client, user))["items"]
    assert len(items) == 2
    first, second = items
    created = datetime.fromisoformat(first.pop("created_at"))
    assert created == T0 + timedelta(hours=1)
    assert first == {
        "id": busy.id,
        "public_sqid": busy.sqid,
        "title": "busy",
        "description": "lots going on",
        "description_markup": "lots going on",
        "mentions": [],
        "width": 64,
        "height": 32,
        "frame_count": 12,
        # The native file first, then the conversions by format.
        "files": [
            {"format": "gif", "file_bytes": len(busy.data or b""), "is_native": True},
            {"format": "png", "file_bytes": 1200, "is_native": False},
            {"format": "webp", "file_bytes": 900, "is_native": False},
        ],
        "art_url": "/vault/ab/x.gif",
        "hidden_by_user": False,
        "hidden_by_mod": False,
        "reaction_count": 4,
        "comment_count": 3,
        "view_count": 42,
        "license_identifier": "CC-BY-4.0",
        "hashtags": ["wip", "cats"],
        "mod_hashtags": ["cats"],
        "remixable": False,
        "layers_bytes": 4096,
        "deleted_by_user_date": None,
        "restorable": None,
        "restore_refusal": None,
        "held_by": None,
    }
    assert second["id"] == quiet.id
    assert (second["hashtags"], second["remixable"], second["layers_bytes"]) == ([], True, None)
    assert (second["reaction_count"], second["comment_count"], second["view_count"]) == (0, 0, 0)
    assert second["license_identifier"] is None
    assert second["description"] is None


async def test_a_post_without_files_lists_an_empty_files_array(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    post = await factory.post(user)
    await factory.pool.execute("DELETE FROM post_files WHERE post_id = $1", post.id)
    items = (await posts_page(client, user))["items"]
    assert items[0]["files"] == []


async def test_a_page_is_one_statement_and_its_count_never_a_query_per_post(
    factory: Factory, database_url: str
) -> None:
    user, ids = await factory.owner_and_bulk(200)
    fan = await factory.user()
    await factory.pool.execute(
        "INSERT INTO reactions (post_id, user_id, emoji) SELECT unnest($1::int[]), $2, 'x'",
        ids,
        fan.id,
    )
    await factory.pool.execute(
        "INSERT INTO comments (post_id, body) SELECT unnest($1::int[]), 'hi'", ids
    )
    async with logging_pool(database_url, "pmd-test-count") as (pool, queries):
        first = await listing.list_posts(pool, user.id, 150, None, deleted=False)
        first_queries = list(queries)
        queries.clear()
        later = await listing.list_posts(pool, user.id, 150, first.next_cursor, deleted=False)
    assert len(first.items) == 150 and len(later.items) == 50
    assert all(i.reaction_count == 1 and i.comment_count == 1 for i in first.items + later.items)
    # Each page: its statement and the count, side by side on two connections when the pool
    # has them.
    page, after, count, after_count = listing.SQL_PAGES[False, False, default_sort(False)]
    assert sorted(first_queries) == sorted([page, count])
    # A later page counts only: the set's digest is the first page's.
    assert sorted(queries) == sorted([after, after_count])
    assert first.total_count == later.total_count == 200


async def test_deleted_listing_shows_posts_within_the_restore_window(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    now = datetime.now(UTC)
    live = await factory.post(user, title="live")
    recent = await factory.post(
        user, title="1h ago", deleted_by_user=True, deleted_by_user_date=now - timedelta(hours=1)
    )
    older = await factory.post(
        user,
        title="6d23h ago",
        deleted_by_user=True,
        deleted_by_user_date=now - timedelta(days=6, hours=23),
    )
    await factory.post(
        user,
        title="7d1h ago",
        deleted_by_user=True,
        deleted_by_user_date=now - timedelta(days=7, hours=1),
    )
    await factory.post(
        user,
        title="deleted playlist",
        kind="playlist",
        deleted_by_user=True,
        deleted_by_user_date=now,
    )

    page = await posts_page(client, user, "deleted=true")
    assert [i["id"] for i in page["items"]] == [recent.id, older.id]
    assert page["total_count"] == 2
    deleted_at = datetime.fromisoformat(page["items"][0]["deleted_by_user_date"])
    assert abs(deleted_at - (now - timedelta(hours=1))) < timedelta(seconds=1)

    # Paginated by deletion time, one at a time.
    items, pages = await _all_pages(client, user, 1, "&deleted=true")
    assert [i["id"] for i in items] == [recent.id, older.id]
    assert [p["total_count"] for p in pages] == [2, 2]

    live_page = await posts_page(client, user)
    assert [i["id"] for i in live_page["items"]] == [live.id]
    assert live_page["items"][0]["deleted_by_user_date"] is None


async def test_deleted_listing_pagination_with_shared_deletion_times(
    client: Client, factory: Factory
) -> None:
    user, ids = await factory.owner_and_bulk(50)
    await factory.pool.execute(
        "UPDATE posts SET deleted_by_user = true, deleted_by_user_date = now()"
        " WHERE id = ANY($1::int[])",
        ids,
    )
    items, pages = await _all_pages(client, user, 8, "&deleted=true")
    assert [i["id"] for i in items] == sorted(ids, reverse=True)
    assert all(p["total_count"] == 50 for p in pages)
    assert (await posts_page(client, user))["total_count"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?limit=0", "limit"),
        ("?limit=513", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=ten", "limit"),
        ("?limit=1.5", "limit"),
        ("?limit=99999999999999999999999", "limit"),
        ("?deleted=maybe", "deleted"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?cursor=%FF%FE", "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode(b"l:1:2:3:4").decode(), "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode(b"l:1:2:").decode(), "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode(b"l:1:2:-3").decode(), "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode(b"l:1:2:9999999999").decode(), "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode(b"x:1:2").decode(), "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode(b"l:1:0").decode(), "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode(b"l:1:99999999999").decode(), "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode(b"l:" + b"9" * 30 + b":1").decode(), "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode(b"l:-" + b"9" * 30 + b":1").decode(), "cursor"),
        ("?cursor=" + base64.urlsafe_b64encode("l:1:١".encode()).decode(), "cursor"),
        ("?cursor=" + "A" * 5000, "cursor"),
        # The filters (tests/api/posts/test_posts_filters.py).
        ("?license=NOPE-1.0", "license"),
        ("?format=jpeg", "format"),
        ("?hidden=maybe", "hidden"),
        ("?remixable=2", "remixable"),
        ("?has_layers=yes", "has_layers"),
        ("?created_after=2024-13-01", "created_after"),
        ("?created_before=yesterday", "created_before"),
        ("?q=" + "x" * 201, "q"),
        ("?hashtag=" + "x" * 65, "hashtag"),
        ("?" + "&".join(["hashtag=t"] * 65), "hashtag"),
        # The orders and engagement keys (tests/api/posts/test_posts_sorting.py).
        ("?sort=views", "sort"),
        ("?sort=id", "sort"),
        ("?sort=", "sort"),
        ("?sort=deleted_at", "sort"),
        ("?order=up", "order"),
        ("?order=DESC", "order"),
        ("?sort=title&order=" + "x" * 30, "order"),
        ("?min_views=-1", "min_views"),
        ("?min_reactions=many", "min_reactions"),
        ("?min_comments=99999999999", "min_comments"),
    ],
)
async def test_bad_query_parameters_are_400_naming_the_parameter(
    client: Client, factory: Factory, query: str, field: str
) -> None:
    user = await factory.user()
    await factory.post(user)
    body = await assert_problem(await client.get(f"/api/pmd/posts{query}", headers=user.auth), 400)
    assert [e["field"] for e in body["errors"]] == [field]
    assert f"`{field}`" in body["detail"]


async def test_a_live_cursor_is_refused_by_the_deleted_listing(
    client: Client, factory: Factory
) -> None:
    user = await factory.user()
    await factory.posts_bulk(user, 3)
    cursor = (await posts_page(client, user, "limit=1"))["next_cursor"]
    assert cursor
    body = await assert_problem(
        await client.get(f"/api/pmd/posts?deleted=true&cursor={cursor}", headers=user.auth), 400
    )
    assert "next_cursor" in body["detail"]


async def test_moderator_lists_the_target_and_counts_are_the_targets(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    mod = await factory.user(roles=["moderator"])
    bob = await factory.user()
    await factory.posts_bulk(mod, 4)
    bob_ids = await factory.posts_bulk(bob, 2)
    page = await posts_page(client, mod, f"target_sqid={bob.sqid}")
    assert sorted(i["id"] for i in page["items"]) == bob_ids
    assert page["total_count"] == 2
    # Listing writes nothing, not even for a moderator.
    assert await pool.fetchval("SELECT count(*) FROM audit_logs") == 0


async def test_the_reply_is_what_the_documented_shapes_encode_to(
    client: Client, factory: Factory
) -> None:
    # The list sends each post's files and tags as the JSON text its query builds
    # (posts/listing.py): it must be byte for byte what msgspec makes of PostItem's, odd
    # formats and tags included.
    assert ListedPost.__struct_fields__ == PostItem.__struct_fields__
    user = await factory.user()
    odd = await factory.post(user, title='quote " backslash \\ tab \t', created_at=T0)
    await factory.pool.execute("DELETE FROM post_files WHERE post_id = $1", odd.id)
    await factory.pool.execute(
        "INSERT INTO post_files (post_id, format, file_bytes, is_native)"
        " VALUES ($1, $2, 0, true), ($1, $3, 2147483647, false), ($1, $4, 7, false)",
        odd.id,
        'p"n\\g',
        "\x01\x1f\x7f\u2028é",
        "webp",
    )
    # The tags likewise, as their query's JSON text.
    await factory.pool.execute(
        "UPDATE posts SET hashtags = $2, mod_hashtags = $3 WHERE id = $1",
        odd.id,
        ['q"t', "b\\s", "\x01\x1f\x7f\u2028é"],
        ["b\\s"],
    )
    bare = await factory.post(user, title="no files", created_at=T0 + timedelta(seconds=1))
    await factory.pool.execute("DELETE FROM post_files WHERE post_id = $1", bare.id)
    await factory.post(user, title="plain", created_at=T0 + timedelta(microseconds=5))
    for query in ("?limit=2", ""):
        resp = await client.get(f"/api/pmd/posts{query}", headers=user.auth)
        assert resp.status == 200
        body = await resp.read()
        assert msgspec.json.encode(msgspec.json.decode(body, type=PostPage)) == body
    tags = {
        i.id: (i.hashtags, i.mod_hashtags) for i in msgspec.json.decode(body, type=PostPage).items
    }
    assert tags[odd.id] == (['q"t', "b\\s", "\x01\x1f\x7f\u2028é"], ["b\\s"])
    assert tags[bare.id] == ([], [])
    files = msgspec.json.decode(body, type=PostPage).items[-1].files
    # The native file first; the order of the others is the database collation's.
    assert (files[0].format, files[0].file_bytes, files[0].is_native) == ('p"n\\g', 0, True)
    assert {(f.format, f.file_bytes, f.is_native) for f in files[1:]} == {
        ("webp", 7, False),
        ("\x01\x1f\x7f\u2028é", 2147483647, False),
    }


async def test_the_page_is_the_principals_whichever_way_the_token_names_them(
    client: Client, factory: Factory
) -> None:
    # The handler reads the page of the user the token's `sub` names while it authenticates;
    # a token the host resolves otherwise (its legacy `user_id`) must still get its own page.
    user, ids = await factory.owner_and_bulk(3)
    await factory.posts_bulk(await factory.user(), 2)
    key = await factory.pool.fetchval("SELECT user_key FROM users WHERE id = $1", user.id)
    exp = int(datetime.now(UTC).timestamp()) + 600
    tokens = {
        "sub": factory.token(user.sqid),
        "user_id only": jwt.encode({"user_id": str(key), "exp": exp}, SECRET, "HS256"),
        "sub unknown": jwt.encode({"sub": "nobody", "user_id": str(key), "exp": exp}, SECRET),
    }
    for name, token in tokens.items():
        resp = await client.get("/api/pmd/posts", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, name
        page = await resp.json()
        assert [i["id"] for i in page["items"]] == sorted(ids, reverse=True), name
        assert page["total_count"] == 3, name


async def test_list_errors_come_in_the_order_of_every_endpoint(
    client: Client, factory: Factory
) -> None:
    # The token first (401, 403), then the query (400), as the route wrapper does elsewhere.
    user = await factory.user()
    banned = await factory.user(banned_until=datetime.now(UTC) + timedelta(days=1))
    plain = await factory.user()
    bad = {"Authorization": "Bearer not.a.jwt"}
    await assert_problem(await client.get("/api/pmd/posts?limit=0", headers=bad), 401)
    await assert_problem(await client.get("/api/pmd/posts?limit=0"), 401)
    await assert_problem(await client.get("/api/pmd/posts?cursor=junk", headers=banned.auth), 403)
    await assert_problem(
        await client.get(f"/api/pmd/posts?limit=0&target_sqid={user.sqid}", headers=plain.auth),
        403,
    )
    await assert_problem(
        await client.get("/api/pmd/posts?limit=0&target_sqid=nobody", headers=plain.auth), 403
    )
    await assert_problem(await client.get("/api/pmd/posts?limit=0", headers=user.auth), 400)
    await assert_problem(await client.get("/api/pmd/posts?cursor=junk", headers=user.auth), 400)

"""The undo history against real PostgreSQL and Redis: it keeps only what an action changed, is
capped per person who acted and paced per person, and every undo keeps the host's rules (moderators' tags
and marks, rule L5, artworks only, a license that is gone)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from pmd_service.core.settings import Settings
from pmd_service.features.posts.batches import apply_action
from pmd_service.features.posts.pace import Budget
from pmd_service.features.posts.undo import KEPT_HISTORY_BYTES, SQL_PURGE_UNDO_HISTORY
from pmd_service.host.access import Principal, User
from pmd_service.web.app import create_app
from support.seeding import Factory, UserRow
from tests.helpers import acted, assert_problem, flag, posted, undone

Client = TestClient[Any, Any]

# What the undo history of every action keeps, both tables (0010's, still purged, and 0013's).
_HISTORY_BYTES = """
SELECT coalesce((SELECT sum(pg_column_size(b.*)) FROM bulk_actions b), 0)
     + coalesce((SELECT sum(pg_column_size(p.*)) FROM bulk_action_posts p), 0)
"""


async def test_history_keeps_only_what_a_hide_changed(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(128)
    # The host's most: 64 tags of 64 characters a post.
    tags = [f"{n:02d}" + "t" * 62 for n in range(64)]
    await pool.execute("UPDATE posts SET hashtags = $1", tags)
    hidden = await acted(client, user, "hide", ids)
    assert await pool.fetchval(_HISTORY_BYTES) <= 64 * 1024
    for n in range(39):
        action = "unhide" if n % 2 == 0 else "hide"
        await acted(client, user, action, ids)
    assert await pool.fetchval(_HISTORY_BYTES) <= 4 * 1024 * 1024
    assert await pool.fetchval("SELECT count(*) FROM bulk_actions") == 40
    # The oldest is still there to undo; its posts changed since, so they are named and left.
    body = await undone(client, user, hidden["undo"])
    assert body["affected_count"] == 0 and body["left_post_ids"] == ids
    last = await acted(client, user, "hide", ids)
    assert (await undone(client, user, last["undo"]))["affected_count"] == 128


# The host's most tags a post: 64 of the artist's own, of 64 characters; 16 of a moderator's.
_MOST_TAGS = [f"{n:02d}" + "t" * 62 for n in range(64)]
_MOST_MOD_TAGS = [f"m{n:02d}" + "t" * 61 for n in range(16)]
# What an action's kept history takes as stored (compressed, or out of line): its figure in
# `history_bytes`, counted before either, is never less.
_STORED = """
SELECT history_bytes, pg_column_size(post_ids) + coalesce(pg_column_size(tags_add), 0)
       + coalesce(pg_column_size(tags_remove), 0) + coalesce(pg_column_size(tag_changes), 0)
       + coalesce(pg_column_size(tags_after), 0) AS stored
FROM bulk_actions WHERE id = $1
"""


def _as(caller: UserRow, target: UserRow | None = None) -> Principal:
    """The service's principal of `caller` acting on their own posts or, as a moderator, on
    `target`'s."""

    def user(row: UserRow, roles: set[str]) -> User:
        return User(row.id, row.sqid, row.handle, f"{row.handle}@example.com", frozenset(roles))

    if target is None:
        return Principal(user(caller, {"user"}), user(caller, {"user"}), 0.0)
    return Principal(user(caller, {"user", "moderator"}), user(target, {"user"}), 0.0)


async def _retags(
    pool: asyncpg.Pool, principal: Principal, ids: list[int], tags: list[str], times: int
) -> dict[uuid.UUID, int]:
    """`times` retags of `ids`, putting `tags` on and taking them off (off first if the posts
    carry them), through the service (so past the pace a person may send): each action's
    history size as it recorded it."""
    carried = await pool.fetchval(
        "SELECT $1 = ANY(hashtags) FROM posts WHERE id = $2", tags[0], ids[0]
    )
    sizes: dict[uuid.UUID, int] = {}
    for n in range(times):
        add, remove = ([], tags) if (n % 2 == 0) == carried else (tags, [])
        outcome = await apply_action(
            pool, principal, "tags", ids, add, remove, budget=Budget(10**9, 10**9, 10**9, 10**9)
        )
        assert outcome.action_id is not None and outcome.changed == len(ids)
        row = await pool.fetchrow(_STORED, outcome.action_id)
        assert row is not None and row["history_bytes"] >= row["stored"] > 0
        sizes[outcome.action_id] = row["history_bytes"]
    return sizes


def _link(action_id: uuid.UUID | str, target: UserRow | None = None) -> str:
    link = f"/api/pmd/actions/{action_id}/undo"
    return f"{link}?target_sqid={target.sqid}" if target else link


async def _assert_dropped(client: Client, user: UserRow, link: str) -> None:
    problem = await assert_problem(await client.post(link, headers=user.auth), 410)
    assert problem["details"]["reason"] == "undo_dropped"
    assert problem["details"] == {
        "reason": "undo_dropped",
        "kept_history_bytes": KEPT_HISTORY_BYTES,
    }


async def test_a_persons_history_is_capped_at_its_real_size_and_an_older_undo_says_why(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(128)
    await pool.execute("UPDATE posts SET hashtags = $1", _MOST_TAGS)
    first = await acted(client, user, "hide", ids[:1])
    first_id = uuid.UUID(first["undo"].split("/")[-2])
    first_size = await pool.fetchval(
        "SELECT history_bytes FROM bulk_actions WHERE id = $1", first_id
    )
    # Sixteen retags of the host's most tags: each keeps a few percent of the cap, and all of
    # them more than it.
    sizes = {first_id: first_size} | await _retags(pool, _as(user), ids, _MOST_TAGS, 16)
    assert sum(sizes.values()) > KEPT_HISTORY_BYTES
    await _assert_dropped(client, user, first["undo"])
    # Exactly the newest actions that fit within the cap are kept: no more, and no fewer.
    kept = await pool.fetch(
        "SELECT id, dropped_at IS NULL AS kept FROM bulk_actions ORDER BY created_at DESC, id DESC"
    )
    newest = [r["id"] for r in kept if r["kept"]]
    assert newest == [r["id"] for r in kept[: len(newest)]]
    held = sum(sizes[i] for i in newest)
    assert held <= KEPT_HISTORY_BYTES < held + sizes[kept[len(newest)]["id"]]
    last = await undone(client, user, _link(newest[0]))
    assert last["affected_count"] == 128


async def test_no_one_drops_anothers_undo(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    """The artist's own actions never drop a moderator's undo, nor one moderator's another's
    or the artist's: each person's history has a cap of its own."""
    user, ids = await factory.owner_and_bulk(128)
    await pool.execute("UPDATE posts SET hashtags = $1", _MOST_TAGS)
    other = await factory.user()
    theirs = await factory.posts_bulk(other, 1)
    mod = await factory.user(roles=["user", "moderator"])
    busy = await factory.user(roles=["user", "moderator"])
    as_mod = {"target_sqid": user.sqid, "action": "hide"}
    hidden = await posted(client, mod, "action", as_mod | {"post_ids": ids[:1]})
    busy_first = await posted(client, busy, "action", as_mod | {"post_ids": ids[1:2]})
    own_first = await acted(client, user, "hide", ids[2:3])
    kept = await acted(client, other, "hide", theirs)
    # The artist's own retags, then the busy moderator's, each past the cap: each drops their
    # own oldest.
    own = await _retags(pool, _as(user), ids, _MOST_TAGS, 16)
    await _assert_dropped(client, user, own_first["undo"])
    await _retags(pool, _as(busy, user), ids, _MOST_MOD_TAGS, 26)
    await _assert_dropped(client, busy, busy_first["undo"])
    # The other moderator's action, the artist's newest and another owner's are all kept.
    body = await undone(client, mod, hidden["undo"])
    assert body["affected_count"] == 1 and body["left_post_ids"] == []
    assert not (await factory.post_flags(ids[:1]))[ids[0]]["hidden_by_mod"]
    # The moderator's retags came and went: the artist's tags are as their newest left them.
    assert (await undone(client, user, _link(list(own)[-1])))["affected_count"] == 128
    assert (await undone(client, other, kept["undo"]))["affected_count"] == 1


async def test_actions_are_paced_per_person(
    aiohttp_client: AiohttpClient, settings: Settings, factory: Factory, redis_clean: None
) -> None:
    client = await aiohttp_client(
        create_app(msgspec.structs.replace(settings, bulk_actions_per_minute=3))
    )
    user, ids = await factory.owner_and_bulk(1)
    other = await factory.user()
    theirs = await factory.posts_bulk(other, 1)
    body = {"action": "hide", "post_ids": ids}
    for _ in range(3):
        await posted(client, user, "action", body)
    relicense = {"post_ids": ids, "license_id": None}
    resp = await client.post("/api/pmd/license", json=relicense, headers=user.auth)
    problem = await assert_problem(resp, 429)
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert "bulk actions a minute" in problem["detail"]
    # Someone else is not slowed down by it.
    await acted(client, other, "hide", theirs)


async def test_undo_keeps_a_tag_a_moderator_took_over(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(1)
    await pool.execute("UPDATE posts SET hashtags = '{art}'")
    added = await acted(client, user, "tags", ids, add=["nsfw"])
    # The host's PUT mod-hashtags claims a tag the artist has: `hashtags` stays as it is.
    await pool.execute("UPDATE posts SET mod_hashtags = '{nsfw}'")
    await undone(client, user, added["undo"])
    row = await pool.fetchrow("SELECT hashtags, mod_hashtags FROM posts")
    assert row is not None
    assert row["hashtags"] == ["art", "nsfw"] and row["mod_hashtags"] == ["nsfw"]


async def test_a_moderators_bulk_tags_are_moderator_tags(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    mod = await factory.user(roles=["user", "moderator"])
    await pool.execute("UPDATE posts SET hashtags = '{a,b,c}'")
    as_mod = {"target_sqid": user.sqid, "action": "tags", "post_ids": ids}
    tagged = await posted(client, mod, "action", as_mod | {"add": ["nsfw"], "remove": ["b"]})
    rows = await pool.fetch("SELECT hashtags, mod_hashtags FROM posts ORDER BY id")
    assert [(r["hashtags"], r["mod_hashtags"]) for r in rows] == [
        (["a", "c", "nsfw"], ["nsfw"])
    ] * 2
    # The artist cannot remove it; the moderator's undo puts back both lists exactly.
    await acted(client, user, "tags", ids, remove=["nsfw"])
    assert await pool.fetchval("SELECT bool_and('nsfw' = ANY(hashtags)) FROM posts")
    await undone(client, mod, tagged["undo"])
    rows = await pool.fetch("SELECT hashtags, mod_hashtags FROM posts ORDER BY id")
    assert [(r["hashtags"], r["mod_hashtags"]) for r in rows] == [(["a", "b", "c"], [])] * 2
    # More than the host's 16 moderator tags a post is refused, naming why.
    many = [f"m{n}" for n in range(17)]
    resp = await client.post("/api/pmd/action", json=as_mod | {"add": many}, headers=mod.auth)
    assert "moderator tags" in (await assert_problem(resp, 400))["detail"]


async def test_a_moderators_undo_of_a_restore_puts_back_each_posts_own_mark(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    mod = await factory.user(roles=["user", "moderator"])
    own, moderated = await factory.posts_bulk(user, 2)
    await acted(client, user, "delete", [own])
    as_mod = {"target_sqid": user.sqid}
    await acted(client, mod, "delete", [moderated], **as_mod)
    restored = await acted(client, mod, "restore", [own, moderated], **as_mod)
    assert (await undone(client, mod, restored["undo"]))["affected_count"] == 2
    marks = await pool.fetch("SELECT post_id, deleted_by FROM moderator_deletions")
    assert [(m["post_id"], m["deleted_by"]) for m in marks] == [(moderated, mod.id)]
    # The owner's own deletion stays the owner's: they may restore it themselves.
    await acted(client, user, "restore", [own])


async def test_undo_keeps_rule_l5_and_names_a_license_that_is_gone(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    legacy, gone, cleared = await factory.posts_bulk(user, 3)
    by = await factory.license("CC-BY-4.0")
    nd = await factory.license("CC-BY-ND-4.0")
    old = await factory.license("OLD-1.0")
    # Written before rule L5: NoDerivatives, yet remixable.
    await pool.execute(
        "UPDATE posts SET license_id = $1, remixable = true WHERE id = $2", nd, legacy
    )
    await pool.execute("UPDATE posts SET license_id = $1 WHERE id = $2", old, gone)
    relicensed = await posted(
        client, user, "license", {"post_ids": [legacy, gone], "license_id": by}
    )
    await pool.execute("DELETE FROM licenses WHERE id = $1", old)
    body = await undone(client, user, relicensed["undo"])
    assert body["affected_count"] == 1 and body["left_post_ids"] == [gone]
    assert "license that no longer exists" in body["message"]
    row = await pool.fetchrow("SELECT license_id, remixable FROM posts WHERE id = $1", legacy)
    assert row is not None and (row["license_id"], row["remixable"]) == (nd, False)
    # Undoing "not remixable" never writes true on a NoDerivatives post.
    await pool.execute(
        "UPDATE posts SET license_id = $1, remixable = true WHERE id = $2", nd, cleared
    )
    off = await acted(client, user, "remixable", [cleared], value=False)
    body = await undone(client, user, off["undo"])
    assert body["affected_count"] == 0 and "NoDerivatives" in body["message"]
    assert not await pool.fetchval("SELECT remixable FROM posts WHERE id = $1", cleared)


async def test_undo_touches_only_artworks(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    hidden = await acted(client, user, "hide", ids)
    await pool.execute("UPDATE posts SET kind = 'playlist' WHERE id = $1", ids[0])
    body = await undone(client, user, hidden["undo"])
    assert body["affected_count"] == 1 and body["left_post_ids"] == ids[:1]
    assert "not an artwork" in body["message"]
    assert await flag(factory, "hidden_by_user", ids) == [True, False]


# Its `posts_changed` event on the stream: tests/api/posts/test_posts_live.py.
async def test_undo_bumps_the_hosts_change_times(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    hidden = await acted(client, user, "hide", ids)
    stale = "now() - interval '2 days'"
    await pool.execute(f"UPDATE posts SET metadata_modified_at = {stale}, updated_at = {stale}")
    await undone(client, user, hidden["undo"])
    fresh = await pool.fetchval(
        "SELECT bool_and(metadata_modified_at > now() - interval '1 minute'"
        " AND updated_at > now() - interval '1 minute') FROM posts"
    )
    assert fresh


async def test_the_purge_keeps_the_last_24_hours(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user, ids = await factory.owner_and_bulk(2)
    old = await acted(client, user, "hide", ids[:1])
    fresh = await acted(client, user, "hide", ids[1:])
    await pool.execute(
        "UPDATE bulk_actions SET created_at = now() - interval '25 hours' WHERE id = $1::uuid",
        old["undo"].split("/")[-2],
    )
    await pool.execute(*SQL_PURGE_UNDO_HISTORY.bind({"clock": datetime.now(UTC)}))
    assert await pool.fetchval("SELECT count(*) FROM bulk_actions") == 1
    assert (await undone(client, user, fresh["undo"]))["affected_count"] == 1


async def test_the_undo_of_a_delete_keeps_the_hosts_restore_rule(
    client: Client, factory: Factory, pool: asyncpg.Pool
) -> None:
    user = await factory.user()
    kept, reuploaded = await factory.posts_bulk(user, 2)
    await pool.execute(
        "UPDATE posts SET hash = repeat(id::text, 64 / length(id::text)) WHERE id = ANY($1)",
        [kept, reuploaded],
    )
    deleted = await acted(client, user, "delete", [kept, reuploaded])
    # The host freed the hash at the delete: the artist uploads the same artwork again.
    art = await pool.fetchval("SELECT hash FROM posts WHERE id = $1", reuploaded)
    again = await factory.post(user, title="again", hash=art)
    problem = await assert_problem(await client.post(deleted["undo"], headers=user.auth), 409)
    assert problem["conflicts"] == [
        {
            "post_id": reuploaded,
            "public_sqid": problem["conflicts"][0]["public_sqid"],
            "held_by": {"post_id": again.id, "public_sqid": again.sqid, "live": True},
        }
    ]
    assert f"uploaded again as post {again.id}" in problem["detail"]
    # Refused whole, and still there to undo once the new post is gone.
    flags = await factory.post_flags([kept, reuploaded])
    assert flags[kept]["deleted_by_user"] and flags[reuploaded]["deleted_by_user"]
    await pool.execute("DELETE FROM posts WHERE id = $1", again.id)
    assert (await undone(client, user, deleted["undo"]))["affected_count"] == 2

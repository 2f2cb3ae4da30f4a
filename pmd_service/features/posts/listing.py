"""Listing a user's artworks (live, or recently deleted) and the site's licenses."""

from __future__ import annotations

import asyncio
from functools import partial

import asyncpg
import msgspec

from ...core.db import fetch_planned
from ...core.named_sql import Named
from ...core.visibility import holds_hash, restorable, visible_comment
from ...host.mentions import Mentions, marked, resolve
from .actions import deleted_by_moderator
from .cursor import Cursor
from .filters import PostFilter, match_digest, predicate
from .schemas import (
    ArtworkHolder,
    License,
    LicenseList,
    ListedPage,
    ListedPost,
    RestoreRefusal,
)
from .sorting import AS_SORTED, KEYS, Sort, default_sort

# A post's files as the very JSON text msgspec makes of `list[PostFile]`, carried as it comes
# (msgspec.Raw): decoding and encoding 512 of them was most of a page's Python time, and this is
# cheaper for PostgreSQL than json_agg. tests/api/posts/test_posts_list.py holds them equal.
_FILES_JSON = """coalesce((
        SELECT '[' || string_agg(
                   '{"format":' || to_json(pf.format)::text
                   || ',"file_bytes":' || coalesce(pf.file_bytes::text, 'null')
                   || ',"is_native":' || pf.is_native::text || '}',
                   ',' ORDER BY pf.is_native DESC, pf.format) || ']'
        FROM post_files pf WHERE pf.post_id = p.id), '[]')"""
# The tags likewise (decoding them was a third of reading a page's rows); an empty array, most
# posts', skips to_json, which on every row was slower than reading the arrays raw.
_TAGS_JSON = "CASE WHEN cardinality({0}) > 0 THEN to_json({0})::text ELSE '[]' END"
# Most rows' tags are that constant: one Raw of it serves them, not two new ones a row.
_NO_TAGS = msgspec.Raw("[]")

# The columns in PostItem's field order (the description's rendering beside it is made in
# Python, after the page is read): a row becomes a ListedPost positionally.
_ITEM_COLUMNS = f"""
    p.id, p.public_sqid, p.title, p.description, p.created_at, p.width, p.height,
    p.frame_count, {_FILES_JSON} AS files, p.art_url, p.hidden_by_user, p.hidden_by_mod,
    (SELECT count(*) FROM reactions r WHERE r.post_id = p.id) AS reaction_count,
    (SELECT count(*) FROM comments c WHERE c.post_id = p.id
        AND {visible_comment("c")}) AS comment_count,
    p.view_count, l.identifier AS license_identifier, {_TAGS_JSON.format("p.hashtags")},
    {_TAGS_JSON.format("p.mod_hashtags")}, p.remixable, p.mkpx_file_bytes, p.deleted_by_user_date
"""
_ITEM_JOINS = "LEFT JOIN licenses l ON l.id = p.license_id"
_LIVE = "p.owner_id = :owner AND p.kind = 'artwork' AND NOT p.deleted_by_user"
_DELETED = f"p.owner_id = :owner AND p.kind = 'artwork' AND {restorable('p')}"
# A deleted post's Restore marks (the live list has none): the live post holding its artwork is
# named only when it is the owner's own (another user's post is not the caller's to see).
_LIVE_MARKS = (
    ", false AS by_moderator, NULL::int AS held_id, NULL::text AS held_sqid, false AS held"
)
_DELETED_MARKS = (
    f", {deleted_by_moderator('p')} AS by_moderator,"
    " CASE WHEN held.owner_id = p.owner_id THEN held.id END AS held_id,"
    " CASE WHEN held.owner_id = p.owner_id THEN held.public_sqid END AS held_sqid,"
    " held.id IS NOT NULL AS held"
)
_HELD_JOIN = f"""
LEFT JOIN LATERAL (
    SELECT h.id, h.public_sqid, h.owner_id FROM posts h WHERE {holds_hash("p", "h")} LIMIT 1
) held ON true"""


_KEY_TYPES = {"time": "timestamptz", "text": "text", "count": "bigint"}


def _page(where: str, sort: Sort, *, after: bool, deleted: bool, filtered: bool = False) -> Named:
    """A page of the items matching `where`, keyset-paginated on (key, id) so nothing is
    skipped; the page `after` starts past (`after_key`, `after_id`)."""
    key, direction = sort.key, "DESC" if sort.descending else "ASC"
    past = key.past.format(f":after_key::{_KEY_TYPES[key.kind]}")
    if after:
        where += f" AND ({key.sql}, p.id) {'<' if sort.descending else '>'} ({past}, :after_id)"
    marks, joins = (
        (_DELETED_MARKS, _ITEM_JOINS + _HELD_JOIN) if deleted else (_LIVE_MARKS, _ITEM_JOINS)
    )
    if key.indexed and not filtered:
        return Named(f"""
SELECT {_ITEM_COLUMNS}{marks}
FROM posts p {joins}
WHERE {where}
ORDER BY {key.sql} {direction}, p.id {direction}
LIMIT :limit
""")
    # A key no index orders, or a filter, sorts every matching post: only ids and keys are
    # sorted, and the page's rows alone get their columns after (whole rows made every match's).
    joins_key = f"\n    {key.joins}" if key.joins else ""
    return Named(f"""
WITH page AS MATERIALIZED (
    SELECT p.id, {key.sql} AS k
    FROM posts p{joins_key}
    WHERE {where}
    ORDER BY k {direction}, p.id {direction}
    LIMIT :limit
)
SELECT {_ITEM_COLUMNS}{marks}, page.k AS {AS_SORTED}
FROM page JOIN posts p ON p.id = page.id {joins}
ORDER BY page.k {direction}, page.id {direction}
""")


def _statements(deleted: bool, filtered: bool, sort: Sort) -> tuple[Named, Named, Named, Named]:
    """The first page, later page, and counts of each, for one view, filter use and order."""
    where = (_DELETED if deleted else _LIVE) + (f" AND {predicate()}" if filtered else "")
    matching = f"FROM posts p WHERE {where}"
    return (
        _page(where, sort, after=False, deleted=deleted, filtered=filtered),
        _page(where, sort, after=True, deleted=deleted, filtered=filtered),
        Named(f"SELECT count(*), {match_digest('p.id')} {matching}"),
        Named(f"SELECT count(*), NULL::text {matching}"),
    )


# Every order's statements, one set per (view, filter used, order).
SQL_PAGES = {
    (deleted, filtered, sort): _statements(deleted, filtered, sort)
    for deleted in (False, True)
    for filtered in (False, True)
    for sort in (Sort(key, descending) for key in KEYS.values() for descending in (False, True))
}


def _item(row: asyncpg.Record, deleted: bool, as_moderator: bool, mentions: Mentions) -> ListedPost:
    # By position, in _ITEM_COLUMNS' order: reading by name, with the files decoded, cost far more.
    refusal: RestoreRefusal | None = None
    if row[21] and not as_moderator:
        refusal = "deleted-by-moderator"
    elif row[24]:
        refusal = "artwork-reuploaded"
    held = None if row[22] is None else ArtworkHolder(row[22], row[23])
    text = row[3]
    # No mentions: the one empty tuple, not a list per row for the collector to track.
    plain, refs = mentions.rendered(text) if marked(text) else (text, ())
    tags, mod_tags = row[16], row[17]
    return ListedPost(
        row[0], row[1], row[2], plain, text, refs, row[4], row[5], row[6], row[7],
        msgspec.Raw(row[8]), row[9], row[10], row[11], row[12], row[13], row[14], row[15],
        _NO_TAGS if tags == "[]" else msgspec.Raw(tags),
        _NO_TAGS if mod_tags == "[]" else msgspec.Raw(mod_tags), row[18], row[19], row[20],
        refusal is None if deleted else None, refusal, held,
    )  # fmt: skip


async def list_posts(
    pool: asyncpg.Pool,
    owner_id: int,
    limit: int,
    cursor: str | None,
    deleted: bool,
    where: PostFilter | None = None,
    *,
    as_moderator: bool = False,
    sort: Sort | None = None,
) -> ListedPage:
    """A page of the listing in `sort` (None: the view's default); `as_moderator`: whether the
    caller may restore what a moderator deleted."""
    where = where or PostFilter()
    sort = sort or default_sort(deleted)
    bound = where.fingerprint()
    after = Cursor.decode(cursor, deleted, bound, sort) if cursor else None
    page_sql, after_sql, count_sql, after_count_sql = SQL_PAGES[deleted, bound is not None, sort]
    values = {"owner": owner_id, "limit": limit + 1, **where.named()}
    # One row more than asked tells whether another page exists, so the last page carries no
    # cursor and a client never spends a request on an empty page.
    # A filter's statements are planned for their own keys (core/db.py says why).
    fetch = partial(fetch_planned, pool) if bound is not None else pool.fetch
    # Each page counts on a second connection at the same time: the count reads every matching
    # post, so run in sequence (or in the page's statement) it added its whole time to the page's.
    if after is not None:
        values |= {"after_key": after.key, "after_id": after.post_id}
        page_sql, count_sql = after_sql, after_count_sql
    rows, counted = await asyncio.gather(
        fetch(*page_sql.bind(values)), fetch(*count_sql.bind(values))
    )
    total, digest = counted[0]
    more = len(rows) > limit
    rows = rows[:limit]
    # The page's mentions, resolved once for every description on it (none: no query).
    mentions = await resolve(pool, [r[3] for r in rows])
    items = [_item(r, deleted, as_moderator, mentions) for r in rows]
    next_cursor = None
    if more:
        last = rows[-1]
        code = None if sort == default_sort(deleted) else sort.code
        next_cursor = Cursor(deleted, last[sort.key.column], last["id"], bound, code).encode()
    return ListedPage(items=items, next_cursor=next_cursor, total_count=total, match_digest=digest)


def live_items_sql(where: str, order: str, limit: str) -> str:
    """SQL: the list's items of the live posts `where` matches (a cleanup policy's preview)."""
    return f"""SELECT {_ITEM_COLUMNS}{_LIVE_MARKS} FROM posts p {_ITEM_JOINS}
WHERE {where} ORDER BY {order} LIMIT {limit}"""


async def live_items(pool: asyncpg.Pool, rows: list[asyncpg.Record]) -> list[ListedPost]:
    """The items of rows `live_items_sql` read, their mentions resolved."""
    mentions = await resolve(pool, [r[3] for r in rows])
    return [_item(r, False, False, mentions) for r in rows]


SQL_LICENSES = "SELECT id, identifier, title FROM licenses ORDER BY identifier, id"


async def list_licenses(pool: asyncpg.Pool) -> LicenseList:
    rows = await pool.fetch(SQL_LICENSES)
    return LicenseList([License(r["id"], r["identifier"], r["title"]) for r in rows])

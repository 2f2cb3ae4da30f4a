"""The host's mentions: texts store `<@SQID>` markup, served as `@handle` (`@user` for a sqid
naming no account) beside the markup and the accounts named (the host's docs/mentions/README.md).
The accounts come from one query (`resolve`), never one a mention.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections.abc import Iterable, Mapping
from itertools import repeat

import asyncpg
import msgspec

from ..core.visibility import visible_comment

MAX_SQID = 32
MENTION = re.compile(rf"<@([A-Za-z0-9]{{1,{MAX_SQID}}})>")
# The grammar for PostgreSQL's regular expressions (the host's MENTION_SQL_PATTERN).
MENTION_SQL = f"<@[A-Za-z0-9]{{1,{MAX_SQID}}}>"
MARK = "<@"  # every mention begins so: a text without it needs no parsing nor any lookup
_UNKNOWN = "@user"  # the host's S2: what a sqid naming no account reads

SQL_ACCOUNTS = """
SELECT public_sqid, handle, avatar_url FROM users WHERE public_sqid = ANY($1::text[])
"""
# The same, plus what the visible comments of the posts $2 may mention (a ZIP streams them):
# each piece after a `<@` up to its first `>` is a candidate, faster than regexp_matches.
SQL_ACCOUNTS_WITH_COMMENTS = f"""
SELECT u.public_sqid, u.handle, u.avatar_url FROM users u
WHERE u.public_sqid IN (
    SELECT unnest($1::text[])
    UNION
    SELECT left(piece, strpos(piece, '>') - 1)
    FROM comments c, unnest(string_to_array(c.body, '{MARK}')) WITH ORDINALITY AS p(piece, n)
    WHERE c.post_id = ANY($2::int[]) AND strpos(c.body, '{MARK}') > 0 AND {visible_comment("c")}
      AND p.n > 1 AND strpos(piece, '>') BETWEEN 2 AND {MAX_SQID + 1}
)
"""


def stripped_sql(column: str) -> str:
    """SQL: the text `column` with every mention removed, as the host's search reads it."""
    return (
        f"CASE WHEN strpos({column}, '{MARK}') > 0"
        f" THEN regexp_replace({column}, '{MENTION_SQL}', '', 'g') ELSE {column} END"
    )


class MentionRef(msgspec.Struct):
    """A mentioned account as the host's payloads carry it."""

    public_sqid: str
    handle: str
    avatar_url: str | None


def marked(text: str | None) -> bool:
    """Whether `text` may hold a mention (cheap: most texts have none)."""
    return text is not None and MARK in text


class Mentions:
    """The accounts some texts mention, by sqid, as of one read: renders those texts."""

    def __init__(self, accounts: Mapping[str, MentionRef] | None = None) -> None:
        self.accounts: Mapping[str, MentionRef] = accounts or {}
        self._shown = {s: "@" + a.handle for s, a in self.accounts.items()}

    def plain(self, text: str | None) -> str | None:
        """`text` with each mention as `@handle`, or `@user` for a sqid naming no account."""
        return self.split(text)[0]

    def refs(self, text: str | None) -> list[MentionRef]:
        """The accounts `text` mentions that exist, distinct, in order of first appearance."""
        return [self.accounts[s] for s in self.split(text)[1]]

    def rendered(self, text: str | None) -> tuple[str | None, list[MentionRef]]:
        """`plain(text)` and `refs(text)` in one pass."""
        plain, sqids = self.split(text)
        return plain, [self.accounts[s] for s in sqids]

    def split(self, text: str | None) -> tuple[str | None, list[str]]:
        """`plain(text)`, and the sqids of the existing accounts it mentions, distinct, in order."""
        if text is None or MARK not in text:
            return text, []
        pieces = MENTION.split(text)  # text, sqid, text, sqid, ..., text
        sqids = pieces[1::2]
        if not sqids:
            return text, []
        shown = self._shown
        pieces[1::2] = map(shown.get, sqids, repeat(_UNKNOWN, len(sqids)))
        named = set(sqids)
        if len(named) == len(sqids) and named <= shown.keys():  # the usual: each once, known
            return "".join(pieces), sqids
        return "".join(pieces), list(filter(shown.__contains__, dict.fromkeys(sqids)))


NONE = Mentions()


def _wanted(texts: Iterable[str | None]) -> list[str]:
    """The sqids `texts` mention, distinct, in order of first appearance."""
    return list(dict.fromkeys(m[1] for t in texts if t and MARK in t for m in MENTION.finditer(t)))


async def resolve(conn: asyncpg.Pool | asyncpg.Connection, texts: Iterable[str | None]) -> Mentions:
    """The accounts `texts` mention, in one query; none when no text holds a mention."""
    wanted = _wanted(texts)
    if not wanted:
        return NONE
    return _mentions(await conn.fetch(SQL_ACCOUNTS, wanted))


async def resolve_with_comments(
    conn: asyncpg.Pool | asyncpg.Connection, texts: Iterable[str | None], post_ids: list[int]
) -> Mentions:
    """As `resolve`, plus what the visible comments of `post_ids` mention, in one query."""
    if not post_ids:
        return await resolve(conn, texts)
    return _mentions(await conn.fetch(SQL_ACCOUNTS_WITH_COMMENTS, _wanted(texts), post_ids))


def resolve_ahead(
    pool: asyncpg.Pool, texts: list[str | None], post_ids: list[int]
) -> concurrent.futures.Future[Mentions]:
    """`resolve_with_comments` started on the running loop, for a ZIP's build thread to wait on."""
    loop = asyncio.get_running_loop()
    return asyncio.run_coroutine_threadsafe(resolve_with_comments(pool, texts, post_ids), loop)


def _mentions(rows: list[asyncpg.Record]) -> Mentions:
    return Mentions({r[0]: MentionRef(r[0], r[1], r[2]) for r in rows})

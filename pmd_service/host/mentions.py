"""The host's mentions: descriptions and comment bodies store `<@SQID>` markup, and every reader
serves the plain rendering (the host's docs/mentions/README.md, rules S1, S2, S6, S11, S12).

- The grammar: `<@` + 1 to 32 of `[A-Za-z0-9]` + `>`; anything else beginning `<@` is plain
  text, and there is no word-boundary rule (`a<@t5>b` is a mention).
- A mention of any existing account (hidden, banned or deactivated too) reads `@handle`, its
  handle as of this read (a rename shows at once); a sqid that names no account reads `@user`.
- Beside the plain text a payload carries the stored markup and `mentions`: the resolved sqids
  as `{public_sqid, handle, avatar_url}`, distinct, in order of first appearance.

The parsing and rendering here are pure; what they need of the database is `Mentions`, the
accounts a page, a job or an email names, read by one query (`resolve`), never one a mention.
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
UNKNOWN_HANDLE = "user"  # the host's S2: what a sqid naming no account reads

SQL_ACCOUNTS = """
SELECT public_sqid, handle, avatar_url FROM users WHERE public_sqid = ANY($1::text[])
"""
# The same, for $1's sqids and what the visible comments of the posts $2 may mention: a ZIP's
# comments are streamed (never all in memory), so their sqids are read where they are. Each
# piece after a `<@` up to its first `>` is a candidate (a superset of the grammar's sqids: the
# rendering decides what is a mention); regexp_matches took five to ten times as long.
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
    """SQL: the text `column` with every mention removed, as the host's search reads it (S12:
    "markup stripped"); the regular expression runs only on a text that may hold one."""
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


def sqids_in(text: str | None) -> list[str]:
    """The sqids `text` mentions, distinct, in order of first appearance."""
    if not marked(text):
        return []
    assert text is not None
    return list(dict.fromkeys(m.group(1) for m in MENTION.finditer(text)))


class Mentions:
    """The accounts some texts mention, by sqid, as of one read: renders those texts.

    A download renders thousands of texts, so each account's `@handle` is made once here, and a
    text is split by the grammar in C rather than substituted by a callback a mention (a third
    of the time)."""

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
        """`plain(text)`, and the sqids of the existing accounts it mentions, distinct, in order
        of first appearance (each a key of `accounts`)."""
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


_UNKNOWN = "@" + UNKNOWN_HANDLE
NONE = Mentions()


def _wanted(texts: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(s for text in texts for s in sqids_in(text)))


async def resolve(conn: asyncpg.Pool | asyncpg.Connection, texts: Iterable[str | None]) -> Mentions:
    """The accounts `texts` mention, in one query; none when no text holds a mention."""
    wanted = _wanted(texts)
    if not wanted:
        return NONE
    return _mentions(await conn.fetch(SQL_ACCOUNTS, wanted))


async def resolve_with_comments(
    conn: asyncpg.Pool | asyncpg.Connection, texts: Iterable[str | None], post_ids: list[int]
) -> Mentions:
    """As `resolve`, plus what the visible comments of `post_ids` mention, in one query. A
    comment written after this read that names an account nothing else names reads `@user`."""
    if not post_ids:
        return await resolve(conn, texts)
    return _mentions(await conn.fetch(SQL_ACCOUNTS_WITH_COMMENTS, _wanted(texts), post_ids))


def resolve_ahead(
    pool: asyncpg.Pool, texts: list[str | None], post_ids: list[int]
) -> concurrent.futures.Future[Mentions]:
    """`resolve_with_comments` started now on the running loop, for a ZIP's build thread to
    wait on at its JSON files: the query runs while the artworks are written. Called on the
    loop; the future is cancelled when the build may never wait for it."""
    loop = asyncio.get_running_loop()
    return asyncio.run_coroutine_threadsafe(resolve_with_comments(pool, texts, post_ids), loop)


def _mentions(rows: list[asyncpg.Record]) -> Mentions:
    return Mentions({r[0]: MentionRef(r[0], r[1], r[2]) for r in rows})

"""comments.json and reactions.json, streamed from a server-side cursor: the bytes are exactly
msgspec's indent=2 pretty-printing of the whole document, plus a newline."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import partial

import asyncpg
import msgspec

from ..core.visibility import visible_comment
from ..host.mentions import Mentions
from .mention_refs import PAD, MentionSlots, indented
from .row_feed import RowFeed

SQL_VISIBLE_COMMENTS = f"""
SELECT c.id, c.post_id, c.parent_id, c.body, c.created_at, u.handle AS author_handle
FROM comments c
LEFT JOIN users u ON u.id = c.author_id
WHERE c.post_id = ANY($1::int[])
  AND {visible_comment("c")}
ORDER BY c.post_id, c.created_at, c.id
"""
SQL_REACTION_COUNTS = """
SELECT post_id, emoji, count(*) AS n
FROM reactions WHERE post_id = ANY($1::int[])
GROUP BY post_id, emoji
ORDER BY post_id, n DESC, emoji
"""

_encode = msgspec.json.encode
_GROUP = PAD * 2  # "comments_by_artwork" → "<sqid>"
_ITEM = PAD * 3  # → "<sqid>" → one comment / one emoji


def _comment(slots: MentionSlots, row: asyncpg.Record) -> bytes:
    return indented(
        {
            "id": str(row["id"]),
            "author_handle": row["author_handle"] or "anonymous",
            **slots.fields(row["body"], "body"),
            "created_at": row["created_at"],
            "parent_id": str(row["parent_id"]) if row["parent_id"] else None,
        },
        _ITEM,
    )


def _reaction(row: asyncpg.Record) -> bytes:
    return _ITEM + _encode(row["emoji"]) + b": " + _encode(row["n"])


def _document(
    now: datetime,
    field: str,
    batches: Iterable[list[asyncpg.Record]],
    sqids: dict[int, str],
    brackets: bytes,
    item: Callable[[asyncpg.Record], bytes],
) -> Iterator[bytes]:
    """`{"generated_at": now, field: {sqid: [items] or {items}}}`, one chunk per batch."""
    yield b'{\n  "generated_at": ' + _encode(now) + b",\n  " + _encode(field) + b": "
    opening, closing = brackets[:1], b"\n" + _GROUP + brackets[1:]
    current: int | None = None
    for rows in batches:
        parts: list[bytes] = []
        for row in rows:
            post_id = row["post_id"]
            if post_id != current:
                parts.append(b"{\n" if current is None else closing + b",\n")
                parts.append(_GROUP + _encode(sqids[post_id]) + b": " + opening + b"\n")
                current = post_id
            else:
                parts.append(b",\n")
            parts.append(item(row))
        yield b"".join(parts)
    yield (b"{}" if current is None else closing + b"\n  }") + b"\n}\n"


def _filled(chunks: Iterable[bytes], slots: MentionSlots) -> Iterator[bytes]:
    """Each chunk with the mentions of its comments in place (a batch's, filled at once)."""
    for chunk in chunks:
        yield slots.fill(chunk)
        slots.clear()


class Extras:
    """The JSON files asked for beside metadata.json, read as the build thread reaches them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        loop: asyncio.AbstractEventLoop,
        cancel: threading.Event,
        *,
        comments: bool,
        reactions: bool,
    ) -> None:
        self._pool, self._loop, self._cancel = pool, loop, cancel
        self.comments, self.reactions = comments, reactions
        self._feeds: list[RowFeed] = []

    def _feed(self, sql: str, post_ids: list[int]) -> RowFeed:
        feed = RowFeed(self._pool, self._loop, self._cancel, sql, post_ids)
        self._feeds.append(feed)
        return feed

    def files(
        self, now: datetime, added: list[int], sqids: dict[int, str], mentions: Mentions
    ) -> list[tuple[str, Iterator[bytes]]]:
        """Lazy: nothing is fetched until the ZIP writer iterates a file."""
        files = []
        if self.comments:
            rows = self._feed(SQL_VISIBLE_COMMENTS, added)
            slots = MentionSlots(mentions, _ITEM + PAD)  # a comment's keys
            comment = partial(_comment, slots)
            doc = _document(now, "comments_by_artwork", rows, sqids, b"[]", comment)
            files.append(("comments.json", _filled(doc, slots)))
        if self.reactions:
            rows = self._feed(SQL_REACTION_COUNTS, added)
            doc = _document(now, "reactions_by_artwork", rows, sqids, b"{}", _reaction)
            files.append(("reactions.json", doc))
        return files

    async def aclose(self) -> None:
        for feed in self._feeds:
            await feed.aclose()

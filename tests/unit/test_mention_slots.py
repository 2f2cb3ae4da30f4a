"""The JSON files' mentions, laid out once an account and spliced in: the bytes are those of
the whole document pretty-printed at once, as these files were always written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from pmd_service.host.mentions import MentionRef, Mentions
from pmd_service.zipbuild.content import pretty_json as _json
from pmd_service.zipbuild.json_files import _comment, _document, _filled
from pmd_service.zipbuild.mention_refs import MentionSlots

ACCOUNTS = [
    MentionRef("t5", "fab", None),
    MentionRef("Qx9", "ドット絵", 'https://x.test/a "b" \\ c.png'),
    MentionRef("mentions", "m", "</script>"),
]
MENTIONS = Mentions({a.public_sqid: a for a in ACCOUNTS})
TEXTS = [
    None,
    "",
    "no mention",
    "hi <@t5>!",
    "<@t5><@Qx9><@t5> and <@gone> and <@mentions>",
    'quoted "mentions": 0 <@Qx9>\nnew line',
    "<@gone> only",
    "a <@b-c> <@",
]


def whole(text: str | None, name: str) -> dict[str, Any]:
    """The host's fields, as a plain dict."""
    plain, refs = MENTIONS.rendered(text)
    return {name: plain, f"{name}_markup": text, "mentions": refs}


def pretty(doc: Any) -> bytes:
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


def test_a_metadata_document_is_byte_identical() -> None:
    slots = MentionSlots(MENTIONS, b"  " * 3)
    entries = [
        {"sqid": f"p{i}", **slots.fields(t, "description"), "n": i} for i, t in enumerate(TEXTS)
    ]
    expected = [{"sqid": f"p{i}", **whole(t, "description"), "n": i} for i, t in enumerate(TEXTS)]
    ours = slots.fill(_json({"user_handle": "x", "artworks": entries}))
    assert ours == pretty({"user_handle": "x", "artworks": expected})
    assert b"<@t5>" in ours and b'"handle": "fab"' in ours


def test_streamed_comments_are_byte_identical() -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    rows: list[Any] = [  # as asyncpg's records are read: by key
        {
            "id": uuid.uuid4(),
            "post_id": p,
            "parent_id": None,
            "body": text,
            "created_at": now,
            "author_handle": "fan",
        }
        for p in (1, 2)
        for text in TEXTS
        if text is not None
    ]
    slots = MentionSlots(MENTIONS, b"  " * 4)
    batches = [rows[:5], rows[5:]]
    chunks = _document(
        now,
        "comments_by_artwork",
        batches,
        {1: "a", 2: "b"},
        b"[]",
        lambda row: _comment(slots, row),
    )
    ours = b"".join(_filled(chunks, slots))
    expected = {
        "generated_at": now,
        "comments_by_artwork": {
            sqid: [
                {
                    "id": str(r["id"]),
                    "author_handle": "fan",
                    **whole(r["body"], "body"),
                    "created_at": now,
                    "parent_id": None,
                }
                for r in rows
                if r["post_id"] == p
            ]
            for p, sqid in ((1, "a"), (2, "b"))
        },
    }
    assert ours == pretty(expected)


def test_slots_and_a_layout_that_do_not_match_are_refused() -> None:
    """The slots are filled in the order they were made: a document laid out from other fields
    (a text with mentions left out) stops the file instead of misplacing the accounts."""
    slots = MentionSlots(MENTIONS, b"    ")
    first, second = (slots.fields(t, "body") for t in ("hi <@t5>!", "<@Qx9> and <@t5>"))
    with pytest.raises(ValueError, match="slots made"):
        slots.fill(_json([first]))
    filled = slots.fill(_json([first, second]))
    assert filled == pretty([whole("hi <@t5>!", "body"), whole("<@Qx9> and <@t5>", "body")])

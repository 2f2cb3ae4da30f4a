"""The opaque keyset cursor of the posts list: (the order's key, id) and what binds it to its
filter and order, base64 of the previous releases' strict grammar (a walk crosses an upgrade)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ...core.codes import Code
from ...core.problems import FieldError, ProblemError, bad_request
from .sorting import Sort, default_sort

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A title is at most 128 characters (the host's varchar(128)): 512 bytes of UTF-8, 683 in
# base64, carried as `t` and that text.
_MAX_TITLE_B64 = 683
_CURSOR_RE = re.compile(
    rf"(?P<kind>[dl]):(?P<key>-?[0-9]{{1,18}}|t[A-Za-z0-9_-]{{0,{_MAX_TITLE_B64}}})"
    r":(?P<post_id>[0-9]{1,10})(?::(?P<total>[0-9]{1,10}))?(?::f(?P<filter>[0-9a-f]{12}))?"
    r"(?::s(?P<sort>[a-z_]{1,20}\.(?:asc|desc)))?"
)
MAX_CURSOR = 1100


@dataclass(frozen=True)
class Cursor:
    deleted: bool
    # The last listed post's value of the order's key: a time, a title or a count.
    key: datetime | str | int
    post_id: int
    # The fingerprint of the filter the walk lists (None: no filter). A cursor reused under
    # another filter would resume a walk at a position in a different set.
    bound: str | None = None
    # The order the walk follows (None: the listing's default, newest first): a cursor reused
    # under another order would resume at a position that means nothing there.
    sort: str | None = None

    def encode(self) -> str:
        raw = f"{'d' if self.deleted else 'l'}:{_key_text(self.key)}:{self.post_id}"
        if self.bound is not None:
            raw += f":f{self.bound}"
        if self.sort is not None:
            raw += f":s{self.sort}"
        return pack(raw)

    @classmethod
    def decode(cls, token: str, deleted: bool, bound: str | None, sort: Sort) -> Cursor:
        """The cursor behind `token` for a walk in `sort`; 400 for one neither `encode` nor a
        previous release could have made, or made for another filter or order."""
        problem = invalid_cursor(
            "`cursor` is not one this API returned; pass `next_cursor` from the previous "
            "page unchanged, or omit it for the first page."
        )
        if len(token) > MAX_CURSOR:
            raise problem
        try:
            # Strict ASCII grammar: int() alone would also take "1_0", " 7" or non-Latin digits.
            match = _CURSOR_RE.fullmatch(unpack(token))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise problem from None
        if match is None or (match["kind"] == "d") != deleted:
            raise problem
        post_id = int(match["post_id"])
        # A previous release's cursor carries its walk's total: checked, then dropped (no number
        # a client wrote into a cursor is shown back: each page counts its own total).
        if not 0 < post_id < 2**31 or int(match["total"] or 0) >= 2**31:
            raise problem
        if match["filter"] != bound:
            raise invalid_cursor(
                "`cursor` belongs to a listing with another filter; start again without a "
                "cursor when the filter changes.",
                "made under another filter",
            )
        code = None if sort == default_sort(deleted) else sort.code
        if match["sort"] != code:
            raise invalid_cursor(
                "`cursor` belongs to a listing in another order (`sort`, `order`); start again "
                "without a cursor when the order changes.",
                "made under another sort or order",
            )
        raw_key = match["key"]
        if raw_key.startswith("t") != (sort.key.kind == "text"):
            raise problem
        key: datetime | str | int
        try:
            if sort.key.kind == "text":
                key = unpack(raw_key[1:], "utf-8")
                if "\x00" in key:  # PostgreSQL's text holds no NUL: no title has one
                    raise problem
            elif sort.key.kind == "time":
                key = EPOCH + timedelta(microseconds=int(raw_key))
            else:
                key = int(raw_key)
                if not 0 <= key < 2**63:
                    raise problem
        except (OverflowError, binascii.Error, UnicodeDecodeError, ValueError):
            raise problem from None
        return cls(deleted, key, post_id, bound, code)


def _key_text(key: datetime | str | int) -> str:
    if isinstance(key, datetime):
        return str(micros(key))
    if isinstance(key, str):
        return "t" + pack(key)
    return str(key)


def micros(at: datetime) -> int:
    """`at` as microseconds since the epoch, exactly (a float would round them)."""
    return (at - EPOCH) // timedelta(microseconds=1)


def pack(raw: str) -> str:
    """`raw` as opaque URL-safe text: base64 without its padding."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def unpack(token: str, encoding: str = "ascii") -> str:
    """The text `pack` made (binascii.Error, UnicodeDecodeError or ValueError if none)."""
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode(encoding)


def invalid_cursor(detail: str, message: str = "invalid cursor") -> ProblemError:
    """The 400 of a `cursor` the walk cannot resume from: `message` for its field error."""
    return bad_request(
        detail,
        slug="invalid-cursor",
        errors=[FieldError(field="cursor", message=message)],
        code=Code.INVALID_CURSOR,
    )

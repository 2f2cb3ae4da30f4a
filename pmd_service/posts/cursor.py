"""The opaque keyset cursor of the posts list: (timestamp, id) and the walk's total, base64 of a
strict grammar."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..core.problems import FieldError, bad_request

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR_RE = re.compile(
    r"(?P<kind>[dl]):(?P<micros>-?[0-9]{1,18}):(?P<post_id>[0-9]{1,10})(?::(?P<total>[0-9]{1,10}))?"
    r"(?::f(?P<filter>[0-9a-f]{12}))?"
)
_MAX_CURSOR = 100


@dataclass(frozen=True)
class Cursor:
    deleted: bool
    at: datetime
    post_id: int
    # The total_count the first page counted, carried along the walk so that later pages do
    # not count again (None: a cursor minted before totals were carried; that page counts).
    total: int | None = None
    # The fingerprint of the filter the walk lists (None: no filter). A cursor reused under
    # another filter would resume a walk whose total and position belong to a different set.
    bound: str | None = None

    def encode(self) -> str:
        raw = f"{'d' if self.deleted else 'l'}:{_micros(self.at)}:{self.post_id}"
        if self.total is not None:
            raw += f":{self.total}"
        if self.bound is not None:
            raw += f":f{self.bound}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, deleted: bool, bound: str | None = None) -> Cursor:
        """The cursor behind `token`; 400 for anything `encode` could not have produced."""
        problem = bad_request(
            "`cursor` is not one this API returned; pass `next_cursor` from the previous "
            "page unchanged, or omit it for the first page.",
            slug="invalid-cursor",
            errors=[FieldError(field="cursor", message="invalid cursor")],
        )
        if len(token) > _MAX_CURSOR:
            raise problem
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise problem from None
        # Strict ASCII grammar: int() alone would also take "1_0", " 7" or non-Latin digits.
        match = _CURSOR_RE.fullmatch(raw)
        if match is None or (match["kind"] == "d") != deleted:
            raise problem
        post_id = int(match["post_id"])
        try:
            at = _EPOCH + timedelta(microseconds=int(match["micros"]))
        except OverflowError:
            raise problem from None
        total = None if match["total"] is None else int(match["total"])
        if not 0 < post_id < 2**31 or (total is not None and total >= 2**31):
            raise problem
        if match["filter"] != bound:
            raise bad_request(
                "`cursor` belongs to a listing with another filter; start again without a "
                "cursor when the filter changes.",
                slug="invalid-cursor",
                errors=[FieldError(field="cursor", message="made under another filter")],
            )
        return cls(deleted, at, post_id, total, bound)


def _micros(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

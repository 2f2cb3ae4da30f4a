"""The orders of the posts list (`sort`, `order`): each one's SQL key, and the check of the
query's values into one of them.

Every order is a keyset on (key, id), ids breaking ties in the key's direction, so a walk
through the pages meets each post once whatever the key's ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.problems import FieldError, bad_request
from ..core.visibility import visible_comment

SORTS = ("created_at", "title", "reaction_count", "comment_count", "view_count")
ORDERS = ("asc", "desc")
# The deleted listing's own order when no `sort` is given: the most recently deleted first.
DELETED_AT = "deleted_at"
Kind = Literal["time", "text", "count"]


@dataclass(frozen=True, slots=True)
class SortKey:
    name: str
    sql: str  # the key, in the listing's query (`p` the post; `s` its counted row, if any)
    kind: Kind  # how a cursor carries the key's value
    column: str  # the listed item's field the key is made of (for the next cursor)
    counted: str | None = None  # the lateral subquery that gives `s.k`, for counted keys
    ascending_first: bool = False  # the order when `order` is not given
    # The key made of the cursor's value (the item's field), in the database's own terms.
    past: str = "{}"
    indexed: bool = False  # an index of the host (hostcheck.py) gives the posts in this order


_REACTIONS = "SELECT count(*) AS k FROM reactions r WHERE r.post_id = p.id"
_COMMENTS = (
    f"SELECT count(*) AS k FROM comments c WHERE c.post_id = p.id AND {visible_comment('c')}"
)
KEYS = {
    k.name: k
    for k in (
        SortKey("created_at", "p.created_at", "time", "created_at", indexed=True),
        # Case-insensitive; the cursor carries the title as listed, lowered by the database.
        SortKey("title", "lower(p.title)", "text", "title", None, True, "lower({})"),
        SortKey("reaction_count", "s.k", "count", "reaction_count", _REACTIONS),
        SortKey("comment_count", "s.k", "count", "comment_count", _COMMENTS),
        SortKey("view_count", "p.view_count", "count", "view_count"),
        SortKey(DELETED_AT, "p.deleted_by_user_date", "time", "deleted_by_user_date", indexed=True),
    )
}


@dataclass(frozen=True, slots=True)
class Sort:
    key: SortKey
    descending: bool

    @property
    def code(self) -> str:
        """What a cursor carries to stay bound to this order."""
        return f"{self.key.name}.{'desc' if self.descending else 'asc'}"


def default_sort(deleted: bool) -> Sort:
    return Sort(KEYS[DELETED_AT if deleted else "created_at"], True)


def check_sort(sort: str | None, order: str | None, deleted: bool) -> Sort:
    """The order the query names (the listing's default for what it leaves out), or a 400
    naming `sort` or `order`."""
    if sort is not None and sort not in SORTS:
        raise bad_request(
            f"`sort` must be one of {', '.join(SORTS)}; got {sort[:20]!r}.",
            slug="invalid-sort",
            errors=[FieldError(field="sort", message="unknown sort")],
        )
    if order is not None and order not in ORDERS:
        raise bad_request(
            f"`order` must be `asc` or `desc`; got {order[:20]!r}.",
            slug="invalid-sort",
            errors=[FieldError(field="order", message="unknown order")],
        )
    key = default_sort(deleted).key if sort is None else KEYS[sort]
    return Sort(key, not key.ascending_first if order is None else order == "desc")

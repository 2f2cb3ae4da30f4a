"""The orders of the posts list: each one's SQL key, a keyset on (key, id)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...core.codes import Code
from ...core.problems import FieldError, bad_request
from ...core.visibility import visible_comment

ORDERS = ("asc", "desc")
# The deleted listing's own order when no `sort` is given: the most recently deleted first.
DELETED_AT = "deleted_at"
Kind = Literal["time", "text", "count"]
# The listing's page query names the key `k` (listing.py): a cursor carries it as it is.
AS_SORTED = "k"


@dataclass(frozen=True, slots=True)
class SortKey:
    name: str
    sql: str  # the key, in the listing's query (`p` the post, and what `joins` adds)
    kind: Kind  # how a cursor carries the key's value
    # The listed row's column the next cursor carries: an item's field, or AS_SORTED.
    column: str = AS_SORTED
    joins: str = ""  # what the key reads beside the post, joined in the listing's FROM
    ascending_first: bool = False  # the order when `order` is not given
    # The key made of the cursor's value, in the database's own terms.
    past: str = "{}"
    indexed: bool = False  # an index of the host (hostcheck.py) gives the posts in this order


_REACTIONS = "SELECT count(*) AS k FROM reactions r WHERE r.post_id = p.id"
_COMMENTS = (
    f"SELECT count(*) AS k FROM comments c WHERE c.post_id = p.id AND {visible_comment('c')}"
)


def _native(value: str, none: str) -> str:
    """`value` of the post's native file as `s.k` (`none` without), looked up post by post."""
    return (
        f"CROSS JOIN LATERAL (SELECT coalesce((SELECT {value} FROM post_files nf"
        f" WHERE nf.post_id = p.id AND nf.is_native), {none}) AS k) s"
    )


KEYS = {
    k.name: k
    for k in (
        SortKey("created_at", "p.created_at", "time", "created_at", indexed=True),
        # Natural and case-insensitive: the database makes the key of the cursor's title again.
        SortKey(
            "title",
            "s.k",
            "text",
            column="title",
            joins="CROSS JOIN LATERAL natural_title_key(p.title) s (k)",
            ascending_first=True,
            past="(SELECT t.k FROM natural_title_key({}) t (k))",
        ),
        SortKey("reaction_count", "s.k", "count", joins=f"CROSS JOIN LATERAL ({_REACTIONS}) s"),
        SortKey("comment_count", "s.k", "count", joins=f"CROSS JOIN LATERAL ({_COMMENTS}) s"),
        SortKey("view_count", "p.view_count", "count", "view_count"),
        # Without a native file: 0, below any (bytes + 1): a cursor carries no negative count.
        SortKey(
            "file_bytes",
            "s.k",
            "count",
            joins=_native("greatest(nf.file_bytes, 0)::bigint + 1", "0"),
        ),
        # No license sorts as an empty identifier: first A to Z, last Z to A.
        SortKey(
            "license",
            "coalesce(lk.identifier::text, '')",
            "text",
            joins="LEFT JOIN licenses lk ON lk.id = p.license_id",
            ascending_first=True,
        ),
        SortKey("remixable", "p.remixable::int", "count"),
        # As the page shows it: hidden by a moderator, by the artist, or not hidden.
        SortKey(
            "hidden",
            "CASE WHEN p.hidden_by_mod THEN 2 WHEN p.hidden_by_user THEN 1 ELSE 0 END",
            "count",
        ),
        SortKey(
            "format", "s.k", "text", joins=_native("nf.format::text", "''"), ascending_first=True
        ),
        SortKey(DELETED_AT, "p.deleted_by_user_date", "time", "deleted_by_user_date", indexed=True),
    )
}
# The keys a `sort` may name, in the order the API documents them.
SORTS = tuple(name for name in KEYS if name != DELETED_AT)


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
    """The order the query names, or a 400 naming `sort` or `order`."""
    for name, value, known, must in (
        ("sort", sort, SORTS, f"one of {', '.join(SORTS)}"),
        ("order", order, ORDERS, "`asc` or `desc`"),
    ):
        if value is not None and value not in known:
            raise bad_request(
                f"`{name}` must be {must}; got {value[:20]!r}.",
                slug="invalid-sort",
                errors=[FieldError(field=name, message=f"unknown {name}")],
                code=Code.INVALID_SORT,
            )
    key = default_sort(deleted).key if sort is None else KEYS[sort]
    return Sort(key, not key.ascending_first if order is None else order == "desc")

"""Which posts a filter matches: the keys of `GET /api/pmd/posts` and of an action's `filter`,
checked into values, and the one SQL predicate both the list and the actions apply.

The list's predicate is a constant: a key left out is a NULL parameter (an empty array for
tags), so one statement serves every combination, and a custom plan folds the absent keys away.
A policy's run takes it shaped for its keys: kept prepared, one generic plan serves each shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Annotated

import asyncpg
import msgspec
from msgspec import Meta

from ...core.codes import Code
from ...core.problems import FieldError, ProblemError, bad_request
from ...core.visibility import visible_comment
from ...host.mentions import stripped_sql
from .host_rules import MAX_TAG_LENGTH, MAX_TAGS_PER_POST, normalize_hashtags

# The formats of a post's native file (the host's post_files.format).
FORMATS = ("png", "gif", "webp", "bmp")
MAX_QUERY = 200
# `license=none`: posts without a license (no identifier is spelled so).
NO_LICENSE = "none"

Tag = Annotated[str, Meta(max_length=MAX_TAG_LENGTH + 8)]
# The engagement filters' bound: a count the host's int columns can hold.
MAX_COUNT = 2_147_483_647
Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]


class FilterKeys(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The filter of an action's body (the list's query parameters, as JSON)."""

    q: (
        Annotated[
            str,
            Meta(
                max_length=MAX_QUERY,
                description="Case-insensitive substring of the title or the description "
                "(its mentions left out, as the site's search reads it: `<@SQID>` matches "
                "neither by its sqid nor by the `@handle` the site shows)",
            ),
        ]
        | None
    ) = None
    hashtag: Annotated[
        list[Tag],
        Meta(
            max_length=MAX_TAGS_PER_POST,
            description="Repeatable: posts carrying every one of these tags (normalised as the "
            "site does: no `#`, lowercase)",
        ),
    ] = []
    license: (
        Annotated[
            str,
            Meta(
                max_length=50,
                description=f"A license identifier (GET /api/pmd/licenses), or `{NO_LICENSE}`",
            ),
        ]
        | None
    ) = None
    hidden: (
        Annotated[bool, Meta(description="Hidden by the user or by a moderator (or neither)")]
        | None
    ) = None
    remixable: Annotated[bool, Meta(description="Remix permission")] | None = None
    format: (
        Annotated[
            str,
            Meta(max_length=10, description=f"The native file's format: {', '.join(FORMATS)}"),
        ]
        | None
    ) = None
    has_layers: Annotated[bool, Meta(description="An `.mkpx` layers file is attached")] | None = (
        None
    )
    created_after: (
        Annotated[
            str,
            Meta(
                max_length=40,
                description="Created on or after this ISO date (UTC midnight) or date-time",
            ),
        ]
        | None
    ) = None
    created_before: (
        Annotated[
            str,
            Meta(max_length=40, description="Created before this ISO date (UTC) or date-time"),
        ]
        | None
    ) = None
    min_reactions: Annotated[Count, Meta(description="At least this many reactions")] | None = None
    min_comments: (
        Annotated[Count, Meta(description="At least this many visible comments")] | None
    ) = None
    min_views: Annotated[Count, Meta(description="At least this many views")] | None = None


@dataclass(frozen=True, slots=True)
class PostFilter:
    """A checked filter, in the predicate's parameter order. `license_id` 0 means no license."""

    q: str | None = None
    hashtags: tuple[str, ...] = ()
    license_id: int | None = None
    hidden: bool | None = None
    remixable: bool | None = None
    format: str | None = None
    has_layers: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    min_reactions: int | None = None
    min_comments: int | None = None
    min_views: int | None = None
    # As given (canonical), for the audit log and the cursor's binding.
    keys: FilterKeys = field(default_factory=FilterKeys)

    def named(self, prefix: str = "f_") -> dict[str, object]:
        """The predicate's parameters by name (`predicate`'s `prefix`)."""
        return {
            f"{prefix}q": self.q,
            f"{prefix}hashtags": list(self.hashtags),
            f"{prefix}license": self.license_id,
            f"{prefix}hidden": self.hidden,
            f"{prefix}remixable": self.remixable,
            f"{prefix}format": self.format,
            f"{prefix}has_layers": self.has_layers,
            f"{prefix}after": self.created_after,
            f"{prefix}before": self.created_before,
            f"{prefix}min_reactions": self.min_reactions,
            f"{prefix}min_comments": self.min_comments,
            f"{prefix}min_views": self.min_views,
        }

    def fingerprint(self) -> str | None:
        """What a cursor carries to stay bound to the filter that made it (None: no filter)."""
        if self.keys == FilterKeys():
            return None
        return hashlib.sha256(msgspec.json.encode(self.keys)).hexdigest()[:12]


# A condition on a post by its parameter's name: the parameter's type, None for one never
# NULL (an array), and the condition's SQL.
Conditions = dict[str, tuple[str | None, str]]


def given(values: Mapping[str, object]) -> frozenset[str]:
    """The names of `values` that hold something: a shaped statement's shape."""
    return frozenset(name for name, value in values.items() if value is not None and value != [])


def joined(conditions: Conditions, op: str, shape: frozenset[str] | None) -> str:
    """SQL: the conditions joined by `op` (AND: each one that is given must hold; OR: any one);
    with a `shape` (`given`), only the ones it names, a statement whose generic plan is as
    good as a custom one; otherwise each behind a test of its parameter, for every shape."""
    if shape is not None:
        named = [sql for name, (_, sql) in conditions.items() if name in shape]
        return "(" + (f"\n    {op} ".join(named) or ("true" if op == "AND" else "false")) + ")"
    absent = "IS NULL OR" if op == "AND" else "IS NOT NULL AND"
    every = [
        sql if kind is None else f"(:{name}::{kind} {absent} {sql})"
        for name, (kind, sql) in conditions.items()
    ]
    return "(\n    " + f"\n    {op} ".join(every) + "\n)"


def predicate(alias: str = "p", prefix: str = "f_", shape: frozenset[str] | None = None) -> str:
    """SQL: the post `alias` matches the filter whose parameters `PostFilter.named(prefix)`
    names (with a `shape`: `joined`'s)."""
    p, n = alias, f":{prefix}"
    description = stripped_sql(f"coalesce({p}.description, '')")
    conditions: Conditions = {
        "q": (
            "text",
            f"""(strpos(lower({p}.title), lower({n}q::text)) > 0
        OR strpos(lower({description}), lower({n}q::text)) > 0)""",
        ),
        "hashtags": (None, f"{p}.hashtags @> {n}hashtags::text[]::varchar[]"),
        "license": ("int", f"{p}.license_id IS NOT DISTINCT FROM nullif({n}license::int, 0)"),
        "hidden": ("bool", f"({p}.hidden_by_user OR {p}.hidden_by_mod) = {n}hidden::bool"),
        "remixable": ("bool", f"{p}.remixable = {n}remixable::bool"),
        "format": (
            "text",
            f"""EXISTS (SELECT 1 FROM post_files f_native
        WHERE f_native.post_id = {p}.id AND f_native.is_native
            AND f_native.format = {n}format::text)""",
        ),
        "has_layers": ("bool", f"({p}.mkpx_file_bytes IS NOT NULL) = {n}has_layers::bool"),
        "after": ("timestamptz", f"{p}.created_at >= {n}after::timestamptz"),
        "before": ("timestamptz", f"{p}.created_at < {n}before::timestamptz"),
        **minimums(p, n, "min", "enough"),
    }
    return joined({f"{prefix}{key}": c for key, c in conditions.items()}, "AND", shape)


def minimums(p: str, n: str, inner: str, outer: str) -> Conditions:
    """The post `p` has at least `{n}min_*` reactions, visible comments and views (a filter's and
    a policy's `keep` alike); `inner`, `outer`: the words of its subqueries' aliases."""
    r, c = f"r_{inner}", f"c_{inner}"
    return {
        "min_reactions": (
            "int",
            f"""{n}min_reactions::int <= (SELECT count(*) FROM (
        SELECT FROM reactions {r} WHERE {r}.post_id = {p}.id LIMIT {n}min_reactions::int)
        AS r_{outer})""",
        ),
        "min_comments": (
            "int",
            f"""{n}min_comments::int <= (SELECT count(*) FROM (
        SELECT FROM comments {c} WHERE {c}.post_id = {p}.id AND {visible_comment(c)}
        LIMIT {n}min_comments::int) AS c_{outer})""",
        ),
        "min_views": ("int", f"{p}.view_count >= {n}min_views::int"),
    }


def match_digest(post_id: str) -> str:
    """SQL aggregate: the opaque `match_digest` of the rows whose ids `post_id` names."""
    # Two sums of differently seeded hashes of the ids, and their count, need no sort and no
    # string of every id: the listing pays little for it (docs/architecture.md has the figure).
    h1 = f"coalesce(sum(hashint4({post_id})), 0)"
    h2 = f"coalesce(sum(hashint4extended({post_id}, 1) % 2147483647), 0)"
    return f"md5(count({post_id}) || ':' || {h1} || ':' || {h2})"


# What match_digest gives for no posts.
EMPTY_DIGEST = hashlib.md5(b"0:0:0", usedforsecurity=False).hexdigest()


SQL_LICENSE_BY_IDENTIFIER = "SELECT id FROM licenses WHERE identifier = $1"


def _bad(field: str, message: str, detail: str) -> ProblemError:
    return bad_request(
        f"`{field}` {detail}",
        slug="invalid-filter",
        errors=[FieldError(field=field, message=message)],
        code=Code.INVALID_FILTER,
    )


def _when(field: str, raw: str) -> datetime:
    """An ISO date (midnight UTC) or date and time (UTC when it names no offset)."""
    value = raw.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _bad(
            field,
            "not an ISO date",
            f"must be an ISO date such as 2024-05-31 (UTC) or a date and time such as "
            f"2024-05-31T12:00:00Z; got {raw[:40]!r}.",
        ) from None
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    try:
        # Compared in UTC: an offset at either end of the calendar (0001-01-01T00:00+01:00)
        # names an instant Python's dates cannot hold, which the database call would fail on.
        at.astimezone(UTC)
    except OverflowError:
        raise _bad(
            field,
            "out of range",
            f"must fall between 0001-01-01 and 9999-12-31 once converted to UTC; got {raw[:40]!r}.",
        ) from None
    return at


async def check_filter(pool: asyncpg.Pool, keys: FilterKeys, prefix: str = "") -> PostFilter:
    """The filter `keys` name, or a 400 naming the first bad key (`prefix` + its name)."""
    q = (keys.q or "").strip() or None
    tags = normalize_hashtags(keys.hashtag)
    long = [t for t in tags if len(t) > MAX_TAG_LENGTH]
    if long:
        raise _bad(
            f"{prefix}hashtag",
            "tag too long",
            f"takes tags of at most {MAX_TAG_LENGTH} characters; {long[0][:40]!r} is longer.",
        )
    license_id: int | None = None
    if keys.license is not None and keys.license.strip().lower() == NO_LICENSE:
        license_id = 0
    elif keys.license is not None:
        license_id = await pool.fetchval(SQL_LICENSE_BY_IDENTIFIER, keys.license.strip())
        if license_id is None:
            raise _bad(
                f"{prefix}license",
                "unknown license",
                f"names no license of the site ({keys.license[:50]!r}); use an identifier "
                f"from GET /api/pmd/licenses, or `{NO_LICENSE}` for posts without one.",
            )
    fmt = keys.format.strip().lower() if keys.format is not None else None
    if fmt is not None and fmt not in FORMATS:
        raise _bad(
            f"{prefix}format",
            "unknown format",
            f"must be one of {', '.join(FORMATS)} (the native file's format); got {fmt[:10]!r}.",
        )
    after = _when(f"{prefix}created_after", keys.created_after) if keys.created_after else None
    before = _when(f"{prefix}created_before", keys.created_before) if keys.created_before else None
    canonical = msgspec.structs.replace(
        keys,
        q=q,
        hashtag=sorted(tags),
        license=NO_LICENSE if license_id == 0 else keys.license and keys.license.strip(),
        format=fmt,
        created_after=after.isoformat() if after else None,
        created_before=before.isoformat() if before else None,
    )
    return PostFilter(
        q,
        tuple(tags),
        license_id,
        keys.hidden,
        keys.remixable,
        fmt,
        keys.has_layers,
        after,
        before,
        keys.min_reactions,
        keys.min_comments,
        keys.min_views,
        canonical,
    )

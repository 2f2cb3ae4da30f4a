"""Cleanup policies: an owner's rule hiding or deleting, on a schedule, old posts it matches."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from msgspec import Meta

from ....core.codes import Code
from ....core.db import SET_CUSTOM_PLAN, from_row
from ....core.locks import SQL_XACT_LOCK, AdvisoryLock
from ....core.named_sql import Named
from ....core.problems import (
    FieldError,
    ProblemError,
    bad_request,
    conflict,
    forbidden,
    not_found,
    validation_error,
)
from ....core.settings import Settings
from ....host.access import Principal
from ....host.columns import host_column
from ....host.eligibility import Sqid
from ..batches import check_approval
from ..filters import Count, FilterKeys, PostFilter, Tag, check_filter, match_digest
from ..host_rules import MAX_TAG_LENGTH, MAX_TAGS_PER_POST, normalize_hashtags
from ..listing import live_items, live_items_sql
from ..schemas import ListedPost
from ..undo import UNDOABLE
from .sql import candidate

PolicyAction = Literal["hide", "delete"]
Every = Literal["day", "week"]
PERIODS: dict[str, timedelta] = {"day": timedelta(days=1), "week": timedelta(weeks=1)}
SAMPLE = 20  # posts a preview shows, the oldest first

NAME_LENGTH = 80
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=NAME_LENGTH,
        description="What the owner calls it: 1 to 80 characters once stripped, none of them "
        "invisible (controls, format and direction marks)",
    ),
]
Days = Annotated[
    int,
    Meta(ge=1, le=3650, description="Only posts created at least this many days ago"),
]


class Keep(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What a run leaves whatever else matches: a post carrying any of `hashtags`, or reaching
    any of the minimums, or of the given remix permission or layers."""

    hashtags: Annotated[
        list[Tag],
        Meta(
            max_length=MAX_TAGS_PER_POST,
            description="Any of these tags, as the filter's `hashtag` takes them (one leading "
            "`#` dropped, lowercased); an empty or too long tag is refused",
        ),
    ] = []
    min_reactions: Annotated[Count, Meta(description="At least this many reactions")] | None = None
    min_comments: (
        Annotated[Count, Meta(description="At least this many visible comments")] | None
    ) = None
    min_views: Annotated[Count, Meta(description="At least this many views")] | None = None
    remixable: Annotated[bool, Meta(description="Of this remix permission")] | None = None
    has_layers: (
        Annotated[bool, Meta(description="With (true) or without an `.mkpx` layers file")] | None
    ) = None


class PolicyFields(msgspec.Struct, forbid_unknown_fields=True):
    """A policy as its owner writes it."""

    name: Name
    action: Annotated[
        PolicyAction,
        Meta(description="`hide`, or `delete` into Recently deleted (restorable as any delete)"),
    ]
    older_than_days: Days
    filter: Annotated[
        FilterKeys, Meta(description="The posts list's filter keys, as an action by filter")
    ] = msgspec.field(default_factory=FilterKeys)
    keep: Keep = msgspec.field(default_factory=Keep)
    every: Annotated[Every, Meta(description="How often it runs")] = "week"
    enabled: bool = True
    notify: Annotated[
        bool, Meta(description="Email the owner after a run that changed something")
    ] = False


class PreviewRequest(PolicyFields, forbid_unknown_fields=True):
    target_sqid: Sqid | None = None
    policy_id: Annotated[
        uuid.UUID | None,
        Meta(
            description="A saved policy's id, to count as its run would: without the posts its "
            "owner took back from it (unhid or restored), which it never takes again"
        ),
    ] = None


ExpectCount = Annotated[Count, Meta(description="The preview's `count`, as the owner approved it")]
ExpectDigest = Annotated[
    str, Meta(max_length=64, description="The preview's `match_digest`: that very set")
]


class PolicyCreate(PolicyFields, forbid_unknown_fields=True, kw_only=True):
    expect_count: ExpectCount
    expect_digest: ExpectDigest | None = None
    target_sqid: Sqid | None = None


class PolicyChange(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The fields to change, only those; `expect_count` (and `expect_digest`) when the change
    widens what a run would change, turns a paused policy on, turns `hide` into `delete`, or
    approves a run that was held."""

    name: Name | None = None
    action: PolicyAction | None = None
    older_than_days: Days | None = None
    filter: FilterKeys | None = None
    keep: Keep | None = None
    every: Every | None = None
    enabled: bool | None = None
    notify: bool | None = None
    paused_by_moderator: (
        Annotated[
            bool,
            Meta(
                description="A moderator's only: `true` pauses it as `enabled: false` does, "
                "`false` lifts a moderator's pause (the owner then turns it on)"
            ),
        ]
        | None
    ) = None
    expect_count: ExpectCount | None = None
    expect_digest: ExpectDigest | None = None
    target_sqid: Sqid | None = None


RunStatus = Literal["ok", "deferred", "held", "failed"]


class LastRun(msgspec.Struct):
    """How the policy's last run went: never silent about one that changed nothing."""

    at: datetime
    status: Annotated[
        RunStatus,
        Meta(
            description="`ok`; `deferred`: a budget of changed posts stopped it (the "
            "owner's: the rest waits for the next run; the site's: it goes on at the next "
            "minute); `held`: it would change far more than the count last approved "
            "(`left_count`), so it changed nothing and waits for the owner to approve that "
            "count (PATCH with `expect_count`); `failed`: see `error_code`"
        ),
    ]
    changed_count: int
    left_count: Annotated[int, Meta(description="Posts it would still change, left for later")]
    error_code: Annotated[
        str | None,
        Meta(
            description="When failed: why (docs/errors.md): `policy_run_timeout`, "
            "`account_banned`, `account_deactivated`, `user_not_found`, `invalid_filter`, "
            "`internal`"
        ),
    ]
    action_id: Annotated[uuid.UUID | None, Meta(description="Its entry in the history")] = None


class Preview(msgspec.Struct):
    count: Annotated[int, Meta(description="The posts a run would change now")]
    sample: Annotated[list[ListedPost], Meta(description=f"The oldest {SAMPLE} of them")]
    match_digest: Annotated[str, Meta(description="That set, for `expect_digest`")]


class PolicyItem(msgspec.Struct):
    id: uuid.UUID
    name: str
    action: PolicyAction
    older_than_days: int
    filter: FilterKeys
    keep: Keep
    every: Every
    enabled: bool
    notify: bool
    created_at: datetime
    next_run_at: Annotated[datetime | None, Meta(description="Null while paused")]
    last_run: LastRun | None
    paused_by_moderator: Annotated[
        bool,
        Meta(description="A moderator paused it: only a moderator lifts that, then the owner"),
    ] = False
    approved_count: Annotated[
        int | None,
        Meta(description="The count its owner last approved (null: saved before approvals)"),
    ] = None
    last_run_undo: Annotated[
        str | None, Meta(description="The last run's undo link, while its owner may use it")
    ] = None


class PolicyCreated(PolicyItem):
    preview: Preview | None = None


class PolicyList(msgspec.Struct):
    items: list[PolicyItem]
    limit: Annotated[int, Meta(description="How many policies an owner may have")]


# --- SQL: the parameters are `Checked.named`'s.
_CANDIDATE = candidate("p")
SQL_COUNT = Named(f"SELECT count(*), {match_digest('p.id')} FROM posts p WHERE {_CANDIDATE}")
SQL_SAMPLE = Named(live_items_sql(_CANDIDATE, "p.created_at, p.id", str(SAMPLE)))

COLUMNS = """id, owner_id, name, action, filter, older_than_days, keep, every, enabled, notify,
    created_at, next_run_at, last_run, paused_by_moderator, approved_count"""
SQL_LIST = f"SELECT {COLUMNS} FROM cleanup_policies WHERE owner_id = $1 ORDER BY created_at, id"
SQL_ONE = f"SELECT {COLUMNS} FROM cleanup_policies WHERE id = $1 AND owner_id = $2"
SQL_ONE_LOCKED = f"{SQL_ONE} FOR UPDATE"
SQL_COUNT_OWNED = "SELECT count(*) FROM cleanup_policies WHERE owner_id = $1"
SQL_INSERT = f"""
INSERT INTO cleanup_policies (owner_id, name, action, filter, older_than_days, keep, every,
                              enabled, notify, approved_count, next_run_at)
VALUES ($1, $2, $3, $4::jsonb, $5, $6::jsonb, $7, $8, $9, $10, now())
RETURNING {COLUMNS}
"""
# Only the fields given (NULL: left as they are), on the row its transaction locked; $13: due
# at the next tick (turned on, or a held run approved), else it keeps its clock.
SQL_UPDATE = f"""
UPDATE cleanup_policies
SET name = coalesce($3, name), action = coalesce($4, action),
    filter = coalesce($5::jsonb, filter), older_than_days = coalesce($6, older_than_days),
    keep = coalesce($7::jsonb, keep), every = coalesce($8, every),
    enabled = coalesce($9, enabled), notify = coalesce($10, notify),
    paused_by_moderator = coalesce($11, paused_by_moderator),
    approved_count = coalesce($12, approved_count), updated_at = now(),
    next_run_at = CASE WHEN $13::bool THEN now() ELSE next_run_at END
WHERE id = $1 AND owner_id = $2
RETURNING {COLUMNS}
"""
# A post the changed policy would change and the old one (its parameters `old_`…) would not.
SQL_WIDENS = Named(f"""
SELECT EXISTS (SELECT 1 FROM posts p WHERE {_CANDIDATE} AND NOT {candidate("p", "old_")})
""")
SQL_DELETE = "DELETE FROM cleanup_policies WHERE id = $1 AND owner_id = $2 RETURNING id"
# The last run's history entry, while its owner may still undo it.
SQL_UNDOABLE = f"SELECT id FROM bulk_actions WHERE id = ANY($1::uuid[]) AND {UNDOABLE}"


async def promotions_seen(pool: asyncpg.Pool, settings: Settings) -> bool:
    """Whether the host's `posts.promoted_at` is there to read: without it a run could not keep
    what the site promoted, so no policy runs, nor is one written."""
    where = (settings.database_url, settings.host_schema)
    column = await host_column(pool, *where, "posts", "promoted_at", "no cleanup policy runs")
    return column.readable


def missing(policy_id: uuid.UUID) -> ProblemError:
    return not_found(
        f"There is no cleanup policy {policy_id} for this user.", code=Code.POLICY_NOT_FOUND
    )


# SQL_INSERT's and SQL_UPDATE's order of the fields: the filter before the age.
_STORED = ("name", "action", "filter", "older_than_days", "keep", "every", "enabled", "notify")
_FIELDS = frozenset(_STORED)


def _stored(fields: PolicyFields, given: set[str] | frozenset[str] = _FIELDS) -> tuple[object, ...]:
    """The fields in _STORED's order: those `given`, NULL for the rest (left as stored)."""
    return tuple(getattr(fields, f) if f in given else None for f in _STORED)


# Characters a name may not hold: controls, format marks (zero-width, direction overrides),
# separators of lines and paragraphs, surrogates and private use: a name shows what it says.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def policy_name(raw: str) -> str:
    """`raw` stripped, or a 422 naming `name` when that is empty, too long or hides text."""
    name = raw.strip()
    message = None
    if not name:
        message = "must hold a visible character"
    elif len(name) > NAME_LENGTH:
        message = f"must be at most {NAME_LENGTH} characters"
    elif hidden := next((c for c in name if unicodedata.category(c) in _INVISIBLE), None):
        message = f"must not hold the invisible character U+{ord(hidden):04X}"
    if message is not None:
        raise validation_error(f"The policy's `name` {message}.", [FieldError("name", message)])
    return name


def keep_tags(raw: list[str]) -> None:
    """A 400 for a tag of `keep.hashtags` no post can carry, once normalised as the filter's."""
    for tag in raw:
        normalized = normalize_hashtags([tag])
        if not normalized or len(normalized[0]) > MAX_TAG_LENGTH:
            why = "is empty" if not normalized else f"is longer than {MAX_TAG_LENGTH} characters"
            raise bad_request(
                f"`keep.hashtags` names {tag[:40]!r}, which {why}: no post carries such a tag, "
                "so it would keep nothing. Name tags as the posts carry them.",
                slug="invalid-tags",
                errors=[FieldError(field="keep.hashtags", message=f"tag {why}")],
                code=Code.INVALID_TAGS,
            )


def fields_of(row: asyncpg.Record) -> PolicyFields:
    filter_keys = msgspec.convert(row["filter"], FilterKeys)
    return from_row(PolicyFields, row, filter=filter_keys, keep=msgspec.convert(row["keep"], Keep))


def _last_run(row: asyncpg.Record) -> LastRun | None:
    value = row["last_run"]
    return None if value is None else msgspec.convert(value, LastRun, strict=False)


def item_of(row: asyncpg.Record, undoable: set[uuid.UUID] | None = None) -> PolicyItem:
    fields = fields_of(row)
    last = _last_run(row)
    undo = None
    if last is not None and last.action_id in (undoable or ()):
        undo = f"/api/pmd/actions/{last.action_id}/undo"
    return from_row(
        PolicyItem,
        row,
        **msgspec.structs.asdict(fields),
        next_run_at=row["next_run_at"] if fields.enabled else None,
        last_run=last,
        last_run_undo=undo,
    )


class Checked(msgspec.Struct):
    """A policy's fields, checked into its statements' parameters."""

    fields: PolicyFields
    where: PostFilter
    keep_tags: list[str]

    def named(
        self, owner_id: int, policy_id: uuid.UUID | None, at: datetime, prefix: str = ""
    ) -> dict[str, object]:
        """`candidate(alias, prefix)`'s parameters, for the run's clock `at`."""
        k, n = self.fields.keep, prefix
        return {
            "owner": owner_id,
            "policy": policy_id,
            f"{n}action": self.fields.action,
            f"{n}cutoff": at - timedelta(days=self.fields.older_than_days),
            f"{n}keep_tags": self.keep_tags,
            **self.where.named(f"{n}f_"),
            # The keep's other fields as they are; its tags normalised, as `keep_tags`.
            **{f"{n}keep_{f}": getattr(k, f) for f in Keep.__struct_fields__ if f != "hashtags"},
        }


async def check(conn: Any, fields: PolicyFields) -> Checked:
    """The fields' filter and tags checked (a 400 naming the first bad filter key)."""
    where = await check_filter(conn, fields.filter, prefix="filter.")
    return Checked(fields, where, normalize_hashtags(fields.keep.hashtags))


async def _counted(conn: Any, values: dict[str, object]) -> tuple[int, str]:
    """The count and digest of the posts a run of the policy (`Checked.named`) would change."""
    await conn.execute(SET_CUSTOM_PLAN)  # core/db.py says why
    row = await conn.fetchrow(*SQL_COUNT.bind(values))
    return int(row[0]), str(row[1])


async def preview(
    pool: asyncpg.Pool,
    principal: Principal,
    fields: PolicyFields,
    policy_id: uuid.UUID | None = None,
) -> Preview:
    """What a run of `fields` (as the saved policy `policy_id`) would change now."""
    keep_tags(fields.keep.hashtags)
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        if policy_id is not None:
            await owned_row(conn, principal, policy_id)  # the target's, or 404
        checked = await check(conn, fields)
        values = checked.named(principal.target.id, policy_id, datetime.now(UTC))
        count, digest = await _counted(conn, values)
        rows = await conn.fetch(*SQL_SAMPLE.bind(values))
    return Preview(count, await live_items(pool, rows), digest)


def owner_only(principal: Principal, what: str) -> None:
    if principal.as_moderator:
        raise forbidden(
            f"Only the owner {what} a cleanup policy; a moderator may read one and pause it.",
            code=Code.POLICY_OWNER_ONLY,
        )


def _approval(count: int, digest: str, expect_count: int | None, expect_digest: str | None) -> None:
    """409 unless the owner approved this very count (and set, when they sent its digest)."""
    details = {"count": count, "match_digest": digest}
    if expect_count is None:
        raise conflict(
            f"This change widens what the policy would change: {count} posts now. Send "
            "`expect_count` with that count (and `expect_digest`) to approve it.",
            slug="policy-widens",
            code=Code.POLICY_WIDENS,
            details=details,
        )
    check_approval(
        count,
        digest,
        expect_count,
        expect_digest,
        f"The policy would change {count} posts now, not the {expect_count} approved; "
        "nothing was saved. Look at the preview again and send its count.",
        f"The policy would change {count} posts now, but not the ones approved; nothing "
        "was saved. Look at the preview again.",
    )


async def create(
    pool: asyncpg.Pool, principal: Principal, body: PolicyCreate, most: int
) -> PolicyCreated:
    """Saved when the owner has fewer than `most` policies and approved the count; due at once."""
    owner_only(principal, "creates")
    owner = principal.target.id
    fields = PolicyFields(**{f: getattr(body, f) for f in PolicyFields.__struct_fields__})
    fields = msgspec.structs.replace(fields, name=policy_name(fields.name))
    keep_tags(fields.keep.hashtags)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(SQL_XACT_LOCK, AdvisoryLock.CLEANUP_POLICIES, owner)
        if await conn.fetchval(SQL_COUNT_OWNED, owner) >= most:
            raise conflict(
                f"An account may have {most} cleanup policies; delete one to make another.",
                slug="too-many-policies",
                code=Code.TOO_MANY_POLICIES,
                details={"limit": most},
            )
        values = (await check(conn, fields)).named(owner, None, datetime.now(UTC))
        count, digest = await _counted(conn, values)
        _approval(count, digest, body.expect_count, body.expect_digest)
        row = await conn.fetchrow(SQL_INSERT, owner, *_stored(fields), count)
        assert row is not None  # INSERT … RETURNING
        sample = await conn.fetch(*SQL_SAMPLE.bind(values))
    return PolicyCreated(
        **msgspec.structs.asdict(item_of(row)),
        preview=Preview(count, await live_items(pool, sample), digest),
    )


async def owned_row(
    conn: Any, principal: Principal, policy_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record:
    sql = SQL_ONE_LOCKED if lock else SQL_ONE
    row: asyncpg.Record | None = await conn.fetchrow(sql, policy_id, principal.target.id)
    if row is None:
        raise missing(policy_id)
    return row


async def _undoable(pool: Any, principal: Principal, rows: list[asyncpg.Record]) -> set[uuid.UUID]:
    ids = [last.action_id for r in rows if (last := _last_run(r)) and last.action_id is not None]
    if principal.as_moderator or not ids:  # a run's undo is its owner's only
        return set()
    return {r["id"] for r in await pool.fetch(SQL_UNDOABLE, ids)}


async def list_policies(pool: asyncpg.Pool, principal: Principal, most: int) -> PolicyList:
    rows = await pool.fetch(SQL_LIST, principal.target.id)
    undoable = await _undoable(pool, principal, rows)
    return PolicyList([item_of(r, undoable) for r in rows], most)


async def get(pool: asyncpg.Pool, principal: Principal, policy_id: uuid.UUID) -> PolicyItem:
    row = await owned_row(pool, principal, policy_id)
    return item_of(row, await _undoable(pool, principal, [row]))


async def delete(pool: asyncpg.Pool, principal: Principal, policy_id: uuid.UUID) -> None:
    owner_only(principal, "deletes")
    if await pool.fetchval(SQL_DELETE, policy_id, principal.target.id) is None:
        raise missing(policy_id)


async def _widens(
    conn: Any, owner: int, policy_id: uuid.UUID, old: PolicyFields, new: Checked
) -> bool:
    """Whether a run of `new` would change a post a run of `old` would not, now (any post, when
    `old` no longer checks: its filter names a license the site removed since)."""
    try:
        before = await check(conn, old)
    except ProblemError:
        return True
    at = datetime.now(UTC)
    values = new.named(owner, policy_id, at) | before.named(owner, policy_id, at, "old_")
    return bool(await conn.fetchval(*SQL_WIDENS.bind(values)))


def paused_by_moderator() -> ProblemError:
    return forbidden(
        "A moderator paused this cleanup policy: it stays paused until a moderator lifts that.",
        code=Code.POLICY_PAUSED_BY_MODERATOR,
    )


# The fields whose change can make a run take a post it would not have taken.
_WIDENING = frozenset({"action", "older_than_days", "filter", "keep", "enabled"})


async def change(
    pool: asyncpg.Pool, principal: Principal, policy_id: uuid.UUID, body: PolicyChange
) -> PolicyItem:
    """Writes only the fields given, on the locked row. A change that widens the set, turns it
    on, or turns `hide` into `delete` needs its count approved; a pause never does."""
    given = {f for f in PolicyChange.__struct_fields__ if getattr(body, f) is not None}
    given -= {"expect_count", "expect_digest", "target_sqid"}
    if principal.as_moderator:
        return await _moderate(pool, principal, policy_id, body, given)
    if "paused_by_moderator" in given:
        raise forbidden(
            "Only a moderator pauses a policy as a moderator or lifts that pause.",
            code=Code.POLICY_PAUSED_BY_MODERATOR,
        )
    if body.name is not None:
        body = msgspec.structs.replace(body, name=policy_name(body.name))
    if body.keep is not None:
        keep_tags(body.keep.hashtags)
    async with pool.acquire() as conn, conn.transaction():
        row = await owned_row(conn, principal, policy_id, lock=True)
        owner = row["owner_id"]
        old = fields_of(row)
        new = msgspec.structs.replace(old, **{f: getattr(body, f) for f in given & _FIELDS})
        turned_on = new.enabled and not old.enabled
        if turned_on and row["paused_by_moderator"]:
            raise paused_by_moderator()
        # Turning `hide` into `delete` always asks, even when nothing matches now.
        approve = (old.action, new.action) == ("hide", "delete") or body.expect_count is not None
        widening = new.enabled and bool(given & _WIDENING)
        approved = None
        if given & {"filter", "keep"} or approve or widening:
            checked = await check(conn, new)
            if widening and not approve:
                approve = turned_on or await _widens(conn, owner, policy_id, old, checked)
            if approve:
                named = checked.named(owner, policy_id, datetime.now(UTC))
                count, digest = await _counted(conn, named)
                _approval(count, digest, body.expect_count, body.expect_digest)
                approved = count
        held = (row["last_run"] or {}).get("status") == "held"
        soon = new.enabled and (turned_on or (approved is not None and held))
        updated = await conn.fetchrow(
            SQL_UPDATE, policy_id, owner, *_stored(new, given), None, approved, soon
        )
    assert updated is not None  # the row is locked by this transaction
    return item_of(updated)


async def _moderate(
    pool: asyncpg.Pool,
    principal: Principal,
    policy_id: uuid.UUID,
    body: PolicyChange,
    given: set[str],
) -> PolicyItem:
    """A moderator pauses (binding until a moderator lifts it) or lifts their pause; the owner
    turns it on again, with its count."""
    pausing = body.enabled is False or body.paused_by_moderator is True
    lifting = body.paused_by_moderator is False and body.enabled is None
    if given - {"enabled", "paused_by_moderator"} or not (pausing or lifting):
        owner_only(principal, "changes (other than pausing)")
    async with pool.acquire() as conn, conn.transaction():
        row = await owned_row(conn, principal, policy_id, lock=True)
        paused = msgspec.structs.replace(fields_of(row), enabled=False)
        fields = _stored(paused, {"enabled"} if pausing else set())
        updated = await conn.fetchrow(
            SQL_UPDATE, policy_id, row["owner_id"], *fields, pausing, None, False
        )
    assert updated is not None  # the row is locked by this transaction
    return item_of(updated)

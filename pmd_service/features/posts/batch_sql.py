"""The statements of batch actions: one per action, caller kind and way of naming the posts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ...core.named_sql import Named
from .action_shape import BulkAction, Part
from .actions import ACTIONS
from .filters import match_digest, predicate
from .live import announce
from .undo import DROP_HISTORY, KEPT_HISTORY_BYTES, WHO_ACTED, first_of_click

# One statement per batch, atomic in one round trip: it locks the eligible rows in id order
# (the gate, which has no column of `p`, reads them all before any row changes) and changes
# them only when nothing is missing or refused, the count matches and the budget has room.
# `actor` is NULL for an owner's own action; `click` and `expect_digest` are NULL when not given.
_BATCH = """
WITH eligible AS (
    SELECT p.id, p.hidden_by_user, p.hidden_by_mod, p.deleted_by_user, p.deleted_by_user_date,
           p.license_id, p.remixable, p.hashtags, p.public_sqid, p.hash, {refuse} AS refused,
           {differs} AS changes{extra}
    FROM posts p
    WHERE {chosen} AND p.owner_id = :owner AND p.kind = 'artwork' AND {eligible}
    ORDER BY p.id
    FOR UPDATE
), eligible_ids AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids, count(*) AS n,
           count(*) FILTER (WHERE changes AND NOT refused) AS would,
           count(*) FILTER (WHERE NOT changes AND NOT refused) AS already
    FROM eligible
), missing AS (
    {missing}
), {refused}, gate AS (
    SELECT g.*, g.ready AND g.within_budget AS ok FROM (
        SELECT cardinality(m.ids) = 0 AND {unrefused} AND {counted} AND {precondition}
                   AS ready,
               e.would <= :room::int AS within_budget,
               {precondition} AS precondition_ok
        FROM missing m, refused r, eligible_ids e
    ) g
), changed AS (
    -- The gate passes only when every requested post is eligible and locked, so their ids
    -- select the rows (a join with `eligible` planned as a nested loop, O(n²)).
    -- `updated_at` is the host's "last changed" column (its ORM bumps it on every change);
    -- `metadata_modified_at` is what the host's players sync on (its own edit bumps it on
    -- every metadata change): without it a post hidden here stays on every player.
    UPDATE posts p SET {assign}, updated_at = now(), metadata_modified_at = now()
    WHERE p.id = ANY({targets}) AND {differs} AND (SELECT ok FROM gate){skipped}
    RETURNING p.id
), changed_ids AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids FROM changed
), prior AS (
    SELECT {prior} FROM eligible e WHERE e.id IN (SELECT id FROM changed)
), logged AS (
    -- `unchanged_count`: the posts it found already so, for the history's one count.
    INSERT INTO bulk_actions (owner_id, actor_id, action, changed_count, unchanged_count,
                              post_ids, history_bytes, click_id{rule_columns}{history_columns})
    SELECT :owner::int, :actor::int, :action::text, cardinality(c.ids), e.already, c.ids,
           pg_column_size(c.ids) + pg_column_size(h), {click}{rule_values}{history_values}
    FROM changed_ids c, prior h, eligible_ids e
    WHERE cardinality(c.ids) > 0
    RETURNING id, history_bytes
), trimmed AS (
    UPDATE bulk_actions b SET {drop_history}, dropped_at = now()
    FROM (SELECT id, sum(history_bytes) OVER (ORDER BY created_at DESC, id DESC) AS newer
          FROM bulk_actions
          WHERE {who_acted} = coalesce(:actor::int, :owner::int)
            AND dropped_at IS NULL AND undone_at IS NULL) o
    WHERE b.id = o.id AND o.newer + (SELECT history_bytes FROM logged) > {kept_bytes}
    RETURNING 1
)
{audited}{moderation}{rule_ctes}{notified}
SELECT g.ok, g.ready, g.within_budget, e.would, g.precondition_ok, m.ids AS missing, r.ids AS refused, e.n AS matched,
       cardinality(c.ids) AS changed,
       -- A batch of a click answers the click's entry in the history (its first batch).
       coalesce({click_entry}, (SELECT id FROM logged)) AS action_id,
       (SELECT count(*) FROM trimmed) AS trimmed{counted_notices},
       {reported} AS match_digest{returned}
       {columns}
FROM gate g, missing m, refused r, eligible_ids e, changed_ids c
"""


# A moderator's batch, and only theirs, leaves a row in the host's audit log; the others leave
# the CTE out, since an idle one is still planned on every run.
_AUDITED = """, audited AS (
    -- The host's audit_logs.id has no default (it sets uuid4 in code): name it here too.
    INSERT INTO audit_logs (id, actor_id, action, target_type, target_id, note)
    SELECT gen_random_uuid(), :actor::int, 'pmd_batch_' || :action::text, 'user', :owner::text,
           {note}::text
    FROM changed_ids c, eligible_ids e
    WHERE (SELECT ok FROM gate)
    RETURNING 1
)"""
# The batch's `posts_changed`; a read-only CTE runs only when read, so the answer counts it.
_NOTIFIED = """, notified AS (
    SELECT {announce} FROM changed_ids c WHERE cardinality(c.ids) > 0
)"""
_ANNOUNCE = announce(":owner::int", ":action::text", "c.ids", "(SELECT id FROM logged)")
_NO_CLICK = "NULL::uuid"
# The names of an action's values (`BulkAction.values`), in their order.
VALUE_NAMES = ("v0", "v1")


def action_values(values: tuple[object, ...]) -> dict[str, object]:
    """An action's values by the names its statement gives them."""
    return dict(zip(VALUE_NAMES, values, strict=False))


@dataclass(frozen=True)
class Mode:
    """How a batch names its posts, checks their count and records itself."""

    chosen: str
    targets: str
    note: str
    missing: str = "SELECT '{}'::int[] AS ids"  # none but of posts named by id
    counted: str = "true"
    reported: str = "NULL::text"
    # The click a batch by ids belongs to (posts/undo.py, same_click); NULL: an action alone.
    click: str = _NO_CLICK
    # An action done by a cleanup policy's run: its history columns and what more it writes.
    rule_columns: str = ""
    rule_values: str = ""
    rule_ctes: str = ""
    # Whether the statement writes its `posts_changed` event; a policy's run writes it last.
    announces: bool = True


_BY_IDS = Mode(
    chosen="p.id = ANY(:post_ids::int[])",
    missing="""SELECT coalesce(array_agg(w.id ORDER BY w.id), '{}') AS ids
    FROM unnest(:post_ids::int[]) AS w(id)
    WHERE w.id NOT IN (SELECT id FROM eligible)""",
    targets=":post_ids::int[]",
    note="json_build_object('post_ids', :post_ids::int[], 'changed', cardinality(c.ids))",
    click=":click::uuid",
)
_DIGEST = f"(SELECT {match_digest('x.id')} FROM unnest(e.ids) AS x(id))"
_BY_FILTER = Mode(
    chosen=predicate(),
    # Exactly the approved count, within the limit, and the approved set when digested.
    counted=f"""e.n = :expect_count::int AND e.n <= :most::int
        AND (:expect_digest::text IS NULL OR {_DIGEST} = :expect_digest::text)""",
    targets="(SELECT ids FROM eligible_ids)::int[]",
    note="json_build_object('filter', :keys::text::json, 'count', e.n, 'changed', cardinality(c.ids))",
    reported=_DIGEST,
)


def batch(mode: Mode, part: Part, *, audited: bool) -> Named:
    """The statement of `part`, its posts named as `mode` says; `audited`: a moderator's."""
    values = {name: f":{name}" for name in VALUE_NAMES}
    history = part.history
    prior = ", ".join(f"{sql} AS {name}" for name, sql in history.prior.items())
    kept = {**history.wrote, **{name: f"h.{name}" for name in history.prior}}
    return Named(
        _BATCH.format(
            **asdict(mode),
            click_entry=first_of_click(mode.click, ":owner::int", ":actor::int", ":action::text")
            if mode.click != _NO_CLICK
            else "NULL::uuid",
            audited=_AUDITED.format(note=mode.note) if audited else "",
            notified=_NOTIFIED.format(announce=_ANNOUNCE) if mode.announces else "",
            counted_notices=", (SELECT count(*) FROM notified) AS notified"
            if mode.announces
            else "",
            returned="" if mode.announces else ", c.ids AS changed_ids",
            refused=part.refused,
            # Skipping, the refused posts are left as they are and the others change.
            unrefused="true" if part.skip_refused else "cardinality(r.ids) = 0",
            skipped="\n      AND p.id <> ALL((SELECT ids FROM refused)::int[])"
            if part.skip_refused
            else "",
            eligible=part.eligible,
            precondition=part.precondition.format(**values),
            refuse=part.refuse.format(**values),
            assign=part.assign.format(**values),
            differs=part.differs.format(**values),
            moderation=part.moderation,
            columns=part.columns.format(**values),
            extra=history.extra.format(**values),
            prior=(prior or "count(*) AS n").format(**values),
            history_columns="".join(f", {name}" for name in kept),
            history_values="".join(f", {sql}" for sql in kept.values()).format(**values),
            drop_history=DROP_HISTORY,
            kept_bytes=KEPT_HISTORY_BYTES,
            who_acted=WHO_ACTED,
        )
    )


SQL_ACTIONS: dict[tuple[str, bool, bool], Named] = {
    (action.name, moderator, by_filter): batch(
        _BY_FILTER if by_filter else _BY_IDS,
        action.caller(moderator).part(by_filter),
        audited=moderator,
    )
    for action in ACTIONS
    for moderator in (False, True)
    for by_filter in (False, True)
}


def statement(action: BulkAction, *, moderator: bool, by_filter: bool) -> Named:
    """The batch statement of `action` as the owner or a moderator, by ids or by filter."""
    return SQL_ACTIONS[action.name, moderator, by_filter]


SQL_DELETED_BY_MODERATOR = """
SELECT coalesce(array_agg(post_id ORDER BY post_id), '{}') FROM moderator_deletions
WHERE post_id = ANY($1::int[]) AND owner_id = $2
"""

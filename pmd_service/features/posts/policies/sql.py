"""Which posts a cleanup policy's run would change (one predicate for preview, count and run),
and the run's statement."""

from __future__ import annotations

from ....core.named_sql import Named
from ....core.visibility import visible_comment
from ..actions import ACTIONS
from ..batch_sql import Mode, batch
from ..filters import predicate

# What a policy may do: never unhide or restore.
POLICY_ACTIONS = ("hide", "delete")


def kept(alias: str, prefix: str = "") -> str:
    """SQL: the post `alias` is one the policy's `keep` exceptions name (`:{prefix}keep_*`)."""
    n, c = f":{prefix}keep_", alias
    return f"""(
    {c}.hashtags && {n}tags::text[]::varchar[]
    OR ({n}min_reactions::int IS NOT NULL AND {n}min_reactions::int <= (SELECT count(*) FROM (
        SELECT FROM reactions r_keep WHERE r_keep.post_id = {c}.id LIMIT {n}min_reactions::int)
        AS r_kept))
    OR ({n}min_comments::int IS NOT NULL AND {n}min_comments::int <= (SELECT count(*) FROM (
        SELECT FROM comments c_keep WHERE c_keep.post_id = {c}.id AND {visible_comment("c_keep")}
        LIMIT {n}min_comments::int) AS c_kept))
    OR ({n}min_views::int IS NOT NULL AND {c}.view_count >= {n}min_views::int)
    OR ({n}remixable::bool IS NOT NULL AND {c}.remixable = {n}remixable::bool)
    OR ({n}has_layers::bool IS NOT NULL AND ({c}.mkpx_file_bytes IS NOT NULL) = {n}has_layers::bool)
)"""


def candidate(alias: str, prefix: str = "") -> str:
    """SQL: the post `alias` is one a run of the policy would change now (never one the site
    promoted): `:owner`'s, for the policy `:policy`, whose other parameters
    (`Checked.named(prefix)`) begin with `prefix`."""
    c, n = alias, f":{prefix}"
    return f"""(
    {c}.owner_id = :owner::int AND {c}.kind = 'artwork' AND NOT {c}.deleted_by_user
    AND NOT {c}.hidden_by_mod AND ({n}action::text <> 'hide' OR NOT {c}.hidden_by_user)
    AND {c}.promoted_at IS NULL
    AND {c}.created_at < {n}cutoff::timestamptz
    AND {predicate(c, f"{prefix}f_")}
    AND NOT {kept(c, prefix)}
    AND NOT EXISTS (SELECT 1 FROM cleanup_policy_posts t_taken
                    WHERE t_taken.policy_id = :policy::uuid AND t_taken.post_id = {c}.id)
)"""


# A cleanup policy's run: `most` is its cap, and `Checked.named`'s its policy's parameters.
_BY_POLICY = Mode(
    chosen=f"""p.id = ANY(ARRAY(SELECT c.id FROM posts c WHERE {candidate("c")}
        ORDER BY c.created_at, c.id LIMIT :most::int))""",
    missing="SELECT '{}'::int[] AS ids",
    counted="true",
    targets="(SELECT ids FROM eligible_ids)::int[]",
    note="json_build_object('policy', :policy::uuid, 'changed', cardinality(c.ids))",
    reported="NULL::text",
    left=":room",
    rule_columns=", policy_id, policy_name",
    rule_values=", :policy::uuid, (SELECT name FROM cleanup_policies WHERE id = :policy::uuid)",
    announces=False,
    rule_ctes=""", remembered AS (
    INSERT INTO cleanup_policy_posts (policy_id, post_id)
    SELECT :policy::uuid, unnest(c.ids) FROM changed_ids c
    ON CONFLICT DO NOTHING
    RETURNING 1
)""",
)

# A cleanup policy's actions -> its run's statement, as the owner's action by filter.
SQL_POLICY_RUNS: dict[str, Named] = {
    action.name: batch(_BY_POLICY, action.owner.part(True))
    for action in ACTIONS
    if action.name in POLICY_ACTIONS
}

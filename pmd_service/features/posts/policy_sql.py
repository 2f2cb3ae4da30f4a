"""Which posts a cleanup policy's run would change: the one predicate its preview, its count and
its run (features/posts/batch_sql.py) apply, over parameters each statement places where it needs them.

A candidate is the owner's live artwork the policy's filter matches (filters.py), older than
its age, that none of its `keep` exceptions names, that no moderator hid, that the action would
change (a hidden post is not hidden again), and that this policy never changed before: a post
its owner took back from it (unhid, restored, or undid the run) is left by every later run.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...core.visibility import visible_comment
from .filters import PARAMS as FILTER_PARAMS
from .filters import predicate

# What a policy may do: never unhide or restore.
POLICY_ACTIONS = ("hide", "delete")

# The keep exceptions' parameters after the filter's: min reactions, min comments, min views,
# remixable, has layers.
KEEP_PARAMS = 5


@dataclass(frozen=True)
class Slots:
    """Where a statement holds the policy's parameters: the owner, the policy (NULL: not saved
    yet), the action's name, the cutoff date, the keep tags, then the filter's PARAMS and the
    keep exceptions' KEEP_PARAMS from their first number."""

    owner: str
    policy: str
    action: str
    cutoff: str
    keep_tags: str
    filter_first: int

    @property
    def keep_first(self) -> int:
        return self.filter_first + FILTER_PARAMS

    @property
    def after(self) -> int:
        """The first parameter number after the policy's."""
        return self.keep_first + KEEP_PARAMS


def kept(alias: str, s: Slots) -> str:
    """SQL: the post `alias` is one the policy's `keep` exceptions name."""
    n = [f"${s.keep_first + i}" for i in range(KEEP_PARAMS)]
    c = alias
    return f"""(
    {c}.hashtags && {s.keep_tags}::text[]::varchar[]
    OR ({n[0]}::int IS NOT NULL AND {n[0]}::int <= (SELECT count(*) FROM (SELECT FROM reactions
        r_keep WHERE r_keep.post_id = {c}.id LIMIT {n[0]}::int) AS r_kept))
    OR ({n[1]}::int IS NOT NULL AND {n[1]}::int <= (SELECT count(*) FROM (SELECT FROM comments
        c_keep WHERE c_keep.post_id = {c}.id AND {visible_comment("c_keep")}
        LIMIT {n[1]}::int) AS c_kept))
    OR ({n[2]}::int IS NOT NULL AND {c}.view_count >= {n[2]}::int)
    OR ({n[3]}::bool IS NOT NULL AND {c}.remixable = {n[3]}::bool)
    OR ({n[4]}::bool IS NOT NULL AND ({c}.mkpx_file_bytes IS NOT NULL) = {n[4]}::bool)
)"""


def candidate(alias: str, s: Slots) -> str:
    """SQL: the post `alias` is one a run of the policy would change now."""
    c = alias
    return f"""(
    {c}.owner_id = {s.owner}::int AND {c}.kind = 'artwork' AND NOT {c}.deleted_by_user
    AND NOT {c}.hidden_by_mod AND ({s.action}::text <> 'hide' OR NOT {c}.hidden_by_user)
    AND {c}.created_at < {s.cutoff}::timestamptz
    AND {predicate(s.filter_first, c)}
    AND NOT {kept(c, s)}
    AND NOT EXISTS (SELECT 1 FROM cleanup_policy_posts t_taken
                    WHERE t_taken.policy_id = {s.policy}::uuid AND t_taken.post_id = {c}.id)
)"""


# The run's own statement (batch_sql.py): $1 owner, $2 policy, $3 action, $6 cutoff, $7 keep
# tags, $9.. the filter, then the keep exceptions.
IN_BATCH = Slots("$1", "$2", "$3", "$6", "$7", 9)
# A preview's and a count's: $1 owner, $2 policy, $3 action, $4 cutoff, $5 keep tags, $6.. the
# filter, then the keep exceptions.
ALONE = Slots("$1", "$2", "$3", "$4", "$5", 6)

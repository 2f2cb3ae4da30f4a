"""Which posts a cleanup policy's run would change: one predicate for preview, count and run."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.visibility import visible_comment
from .filters import PARAMS as FILTER_PARAMS
from .filters import predicate

# What a policy may do: never unhide or restore.
POLICY_ACTIONS = ("hide", "delete")

# The keep exceptions' parameters after the filter's.
KEEP_PARAMS = 5


@dataclass(frozen=True)
class Slots:
    """Where a statement holds the policy's parameters, the filter's from `filter_first` on."""

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
    """SQL: the post `alias` is one a run of the policy would change now (never one the site
    promoted)."""
    c = alias
    return f"""(
    {c}.owner_id = {s.owner}::int AND {c}.kind = 'artwork' AND NOT {c}.deleted_by_user
    AND NOT {c}.hidden_by_mod AND ({s.action}::text <> 'hide' OR NOT {c}.hidden_by_user)
    AND {c}.promoted_at IS NULL
    AND {c}.created_at < {s.cutoff}::timestamptz
    AND {predicate(s.filter_first, c)}
    AND NOT {kept(c, s)}
    AND NOT EXISTS (SELECT 1 FROM cleanup_policy_posts t_taken
                    WHERE t_taken.policy_id = {s.policy}::uuid AND t_taken.post_id = {c}.id)
)"""


# The run's own statement (batch_sql.py).
IN_BATCH = Slots("$1", "$2", "$3", "$6", "$7", 9)
# A preview's and a count's.
ALONE = Slots("$1", "$2", "$3", "$4", "$5", 6)

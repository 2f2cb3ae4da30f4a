"""Which posts a cleanup policy's run would change (one predicate for preview, count and run),
and the run's statement."""

from __future__ import annotations

import dataclasses
import functools

from ....core.named_sql import Named
from ..actions import named
from ..batch_sql import Mode, batch
from ..filters import Conditions, joined, minimums, predicate

# What a policy may do: never unhide or restore.
POLICY_ACTIONS = ("hide", "delete")


def kept(alias: str, prefix: str = "", shape: frozenset[str] | None = None) -> str:
    """SQL: the post `alias` is one the policy's `keep` exceptions name (`:{prefix}keep_*`;
    with a `shape`: `joined`'s)."""
    n, c = f":{prefix}keep_", alias
    exceptions: Conditions = {
        "tags": (None, f"{c}.hashtags && {n}tags::text[]::varchar[]"),
        **minimums(c, n, "keep", "kept"),
        "remixable": ("bool", f"{c}.remixable = {n}remixable::bool"),
        "has_layers": ("bool", f"({c}.mkpx_file_bytes IS NOT NULL) = {n}has_layers::bool"),
    }
    return joined({f"{prefix}keep_{key}": e for key, e in exceptions.items()}, "OR", shape)


def candidate(alias: str, prefix: str = "", shape: frozenset[str] | None = None) -> str:
    """SQL: the post `alias` is one a run of the policy would change now (never one the site
    promoted): `:owner`'s, for the policy `:policy`, whose other parameters
    (`Checked.named(prefix)`) begin with `prefix`; `shape`: `predicate`'s."""
    c, n = alias, f":{prefix}"
    return f"""(
    {c}.owner_id = :owner::int AND {c}.kind = 'artwork' AND NOT {c}.deleted_by_user
    AND NOT {c}.hidden_by_mod AND ({n}action::text <> 'hide' OR NOT {c}.hidden_by_user)
    AND {c}.promoted_at IS NULL
    AND {c}.created_at < {n}cutoff::timestamptz
    AND {predicate(c, f"{prefix}f_", shape)}
    AND NOT {kept(c, prefix, shape)}
    AND NOT EXISTS (SELECT 1 FROM cleanup_policy_posts t_taken
                    WHERE t_taken.policy_id = :policy::uuid AND t_taken.post_id = {c}.id)
)"""


_NAME = "(SELECT name FROM cleanup_policies WHERE id = :policy::uuid)"
# A cleanup policy's run: `most` is its cap, and `Checked.named`'s its policy's parameters.
_BY_POLICY = Mode(
    chosen="",  # the candidates of the run's shape, below
    targets="(SELECT ids FROM eligible_ids)::int[]",
    note="json_build_object('policy', :policy::uuid, 'changed', cardinality(c.ids))",
    rule_columns=", policy_id, policy_name",
    rule_values=f", :policy::uuid, {_NAME}",
    announces=False,
    # The posts it changed, and the run in its policy's runs (its email owed when `notify`).
    rule_ctes=f""", remembered AS (
    INSERT INTO cleanup_policy_posts (policy_id, post_id)
    SELECT :policy::uuid, unnest(c.ids) FROM changed_ids c
    ON CONFLICT DO NOTHING
    RETURNING 1
), ran AS (
    INSERT INTO cleanup_policy_runs (id, policy_id, owner_id, policy_name, action, changed_count,
                                     request_id, send_email)
    SELECT l.id, :policy::uuid, :owner::int, {_NAME}, :action::text, cardinality(c.ids),
           :request_id::text, :notify::bool
    FROM logged l, changed_ids c
    RETURNING 1
)""",
)
# Shapes a worker keeps statements for: far more than the filters people write.
SHAPES_KEPT = 256


@functools.lru_cache(maxsize=SHAPES_KEPT)
def policy_run(action: str, shape: frozenset[str] | None = None) -> Named:
    """A policy's run as the owner's action by filter, for the policies of its `shape`."""
    chosen = f"""p.id = ANY(ARRAY(SELECT c.id FROM posts c WHERE {candidate("c", shape=shape)}
        ORDER BY c.created_at, c.id LIMIT :most::int))"""
    mode = dataclasses.replace(_BY_POLICY, chosen=chosen)
    return batch(mode, named(action).owner.part(True), audited=False)


@functools.lru_cache(maxsize=SHAPES_KEPT)
def counted(shape: frozenset[str] | None = None) -> Named:
    """How many posts a run of a policy of this `shape` would change now."""
    return Named(f"SELECT count(*) FROM posts p WHERE {candidate('p', shape=shape)}")


# Every statement of a run, for any shape: what the tests prepare.
SQL_POLICY_RUNS = {action: policy_run(action) for action in POLICY_ACTIONS}
SQL_CANDIDATES = counted()

-- Cleanup policies: an owner's rule that hides or deletes, on a schedule, what a filter of the
-- posts list matches once older than `older_than_days`, except what `keep` names. Like the
-- service's other rows, no foreign key to a host table (see 0001). Expand only: the previous
-- release neither reads nor writes any of it.
CREATE TABLE cleanup_policies (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id        integer NOT NULL,
    name            varchar(80) NOT NULL CONSTRAINT cleanup_policy_name_given
        CHECK (length(btrim(name)) BETWEEN 1 AND 80),
    action          varchar(10) NOT NULL CONSTRAINT cleanup_policy_action_valid
        CHECK (action IN ('hide', 'delete')),
    filter          jsonb NOT NULL DEFAULT '{}'::jsonb,
    older_than_days integer NOT NULL CONSTRAINT cleanup_policy_age_valid
        CHECK (older_than_days BETWEEN 1 AND 3650),
    keep            jsonb NOT NULL DEFAULT '{}'::jsonb,
    every           varchar(4) NOT NULL CONSTRAINT cleanup_policy_every_valid
        CHECK (every IN ('day', 'week')),
    enabled         boolean NOT NULL DEFAULT true,
    notify          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    next_run_at     timestamptz NOT NULL,
    -- {at, status, changed_count, left_count, error_code, action_id}: the API shows it as is.
    last_run        jsonb
);

CREATE INDEX cleanup_policies_owner_idx ON cleanup_policies (owner_id, created_at, id);
-- The worker's tick reads the due ones, the longest overdue first.
CREATE INDEX cleanup_policies_due_idx ON cleanup_policies (next_run_at) WHERE enabled;

-- Every post a policy changed: later runs of that policy leave it alone, so a post its owner
-- took back (unhid, restored, or undid the run) is never taken again by the same rule.
CREATE TABLE cleanup_policy_posts (
    policy_id uuid NOT NULL REFERENCES cleanup_policies (id) ON DELETE CASCADE,
    post_id   integer NOT NULL,
    PRIMARY KEY (policy_id, post_id)
);

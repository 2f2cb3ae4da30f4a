-- A cleanup policy's run held for its owner's approval (0031: it would change far more than the
-- count last approved): its email to the owner, owed whatever the policy's `notify`, taken under
-- a lease and sent once, as a run's is (0028). One row a hold, written in the run's own
-- transaction when the policy was not held already; the daily cleanup removes it a week on.
-- Like the service's other rows, no foreign key to a host table (see 0001), nor to its policy.
-- Expand only: the previous release neither reads nor writes it.
CREATE TABLE cleanup_policy_holds (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    policy_id         uuid NOT NULL,
    owner_id          integer NOT NULL,
    -- As the policy was named and set when it was held.
    policy_name       varchar(80) NOT NULL,
    action            varchar(10) NOT NULL CONSTRAINT cleanup_policy_hold_action_valid
        CHECK (action IN ('hide', 'delete')),
    held_count        integer NOT NULL,
    approved_count    integer NOT NULL,
    held_at           timestamptz NOT NULL DEFAULT now(),
    request_id        text,
    email_sent_at     timestamptz,
    email_lease_until timestamptz,
    email_attempts    integer NOT NULL DEFAULT 0
);

-- The sweep's emails owed (never taken, or holding a lease), the oldest first.
CREATE INDEX cleanup_policy_holds_email_idx ON cleanup_policy_holds (held_at)
    WHERE email_sent_at IS NULL OR email_lease_until IS NOT NULL;

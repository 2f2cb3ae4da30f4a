-- A cleanup policy's run that changed something (0027), written in the run's own transaction:
-- a run that committed owes its email (when its policy has `notify`), one rolled back owes
-- none. The email is taken under a lease and sent once, as a download's is (0017,
-- mail/notify.py); the daily cleanup removes a row a day after its run's undo window ended.
-- Like the service's other rows, no foreign key to a host table (see 0001), nor to its policy,
-- which its owner may delete before the email goes. Expand only: the previous release neither
-- reads nor writes it.
CREATE TABLE cleanup_policy_runs (
    -- The run's entry in the history (bulk_actions.id): one row a run.
    id                uuid PRIMARY KEY,
    policy_id         uuid NOT NULL,
    owner_id          integer NOT NULL,
    -- As the policy was named when it ran.
    policy_name       varchar(80) NOT NULL,
    action            varchar(10) NOT NULL CONSTRAINT cleanup_policy_run_action_valid
        CHECK (action IN ('hide', 'delete')),
    changed_count     integer NOT NULL CONSTRAINT cleanup_policy_run_changed
        CHECK (changed_count > 0),
    ran_at            timestamptz NOT NULL DEFAULT now(),
    request_id        text,
    send_email        boolean NOT NULL,
    email_sent_at     timestamptz,
    email_lease_until timestamptz,
    email_attempts    integer NOT NULL DEFAULT 0
);

-- The sweep's emails owed (never taken, or holding a lease), the oldest first; the daily
-- cleanup reads a table of two days' runs whole.
CREATE INDEX cleanup_policy_runs_email_idx ON cleanup_policy_runs (ran_at)
    WHERE send_email AND (email_sent_at IS NULL OR email_lease_until IS NOT NULL);

-- A moderator's reads of a user's ZIP already written to the host's audit log, one row per
-- moderator, file and clock hour: every range of a resumable download (and every redirect)
-- is a read, and each must be audited without writing one audit row per range. The audit row
-- is inserted in the same statement as this one, only when this one is new (the primary key
-- decides between concurrent ranges), so the service needs no right to read the host's
-- audit_logs. The daily cleanup drops rows older than a day. Additive: a release without it
-- keeps working beside this schema during a rolling deploy.
CREATE TABLE audited_reads (
    actor_id integer NOT NULL,
    action   varchar(100) NOT NULL,
    file     text NOT NULL,
    hour     timestamptz NOT NULL,
    PRIMARY KEY (actor_id, action, file, hour)
);
CREATE INDEX audited_reads_hour_idx ON audited_reads (hour);

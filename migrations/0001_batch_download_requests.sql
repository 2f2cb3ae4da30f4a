-- Batch download requests (BDRs): one row per ZIP a user asked for. This is the service's own
-- table, in its own schema: the host has a `batch_download_requests` of its own (its Celery
-- PMD), which stays untouched. No foreign key points at a host table: creating one would lock
-- `users` against writes and hang RI triggers on it; rows of users that no longer exist are
-- purged by the daily cleanup instead.
CREATE TABLE batch_download_requests (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           integer NOT NULL,
    -- The user's public id when the request was made: download URLs carry it as `target_sqid`,
    -- so the same URL works for the user and for a moderator watching the user's page.
    user_sqid         varchar(16),
    -- The moderator who asked on the user's behalf, if any.
    requested_by      integer,
    post_ids          integer[] NOT NULL,
    include_comments  boolean NOT NULL DEFAULT false,
    include_reactions boolean NOT NULL DEFAULT false,
    send_email        boolean NOT NULL DEFAULT false,
    status            varchar(20) NOT NULL DEFAULT 'pending'
        CONSTRAINT bdr_status_valid CHECK (
            status IN ('pending', 'processing', 'ready', 'failed', 'expired', 'cancelled')),
    error_message     text CONSTRAINT bdr_error_message_short CHECK (length(error_message) <= 500),
    file_path         varchar(500),
    file_size_bytes   bigint,
    file_sha256       char(64),
    -- The artworks' declared size (the host's post_files.file_bytes) when requested: the
    -- requester's daily byte budget counts it.
    estimated_bytes   bigint NOT NULL DEFAULT 0,
    artwork_count     integer NOT NULL
        CONSTRAINT bdr_artwork_count_range CHECK (artwork_count BETWEEN 1 AND 128),
    progress_done     integer NOT NULL DEFAULT 0,
    skipped           jsonb NOT NULL DEFAULT '[]'::jsonb,
    attempts          integer NOT NULL DEFAULT 0,
    -- Which run owns the row while processing; every write of a run is guarded by it, so a
    -- run that lost its claim (stale, cancelled) can never overwrite the row.
    claim_token       uuid,
    -- Refreshed by the running worker; a stale one means the worker is gone (the sweep's cue).
    heartbeat_at      timestamptz,
    retry_at          timestamptz,
    email_sent_at     timestamptz,
    email_attempts    integer NOT NULL DEFAULT 0,
    request_id        varchar(64),
    update_seq        bigint NOT NULL DEFAULT 0,
    -- False from the server's insert until its reply to the POST is on the wire: no event is
    -- published before, so a page that adds the reply to its list and then updates cards by id
    -- from the stream never sees the request first from the stream (a second, stale card).
    announced         boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz,
    expires_at        timestamptz,
    CONSTRAINT bdr_artwork_count_matches CHECK (artwork_count = cardinality(post_ids))
);

-- A user's newest BDRs, and the daily quota count (user_id, created_at >= UTC midnight).
CREATE INDEX bdr_user_created_idx ON batch_download_requests (user_id, created_at DESC);
-- A moderator's requests for others count against the moderator's own daily quota.
CREATE INDEX bdr_requested_by_created_idx ON batch_download_requests (requested_by, created_at DESC)
    WHERE requested_by IS NOT NULL;
-- The daily expiry sweep.
CREATE INDEX bdr_ready_expires_idx ON batch_download_requests (expires_at) WHERE status = 'ready';
-- The every-minute sweep of unfinished requests.
CREATE INDEX bdr_unfinished_idx ON batch_download_requests (created_at)
    WHERE status IN ('pending', 'processing');
-- Terminal rows to purge, and emails still owed.
CREATE INDEX bdr_terminal_idx ON batch_download_requests (completed_at)
    WHERE status IN ('failed', 'expired', 'cancelled');
CREATE INDEX bdr_email_owed_idx ON batch_download_requests (completed_at)
    WHERE send_email AND email_sent_at IS NULL AND status IN ('ready', 'failed');

CREATE FUNCTION bdr_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.update_seq := OLD.update_seq + 1;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER bdr_touch BEFORE UPDATE ON batch_download_requests
    FOR EACH ROW EXECUTE FUNCTION bdr_touch();

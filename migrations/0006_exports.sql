-- Full exports: every artwork of one user, in parts of at most `part_bytes`, each part a BagIt
-- bag in its own ZIP. Like BDRs, the rows live in the service's schema, with no foreign key to
-- a host table (see 0001).
CREATE TABLE exports (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           integer NOT NULL,
    user_sqid         varchar(16),
    status            varchar(20) NOT NULL DEFAULT 'pending'
        CONSTRAINT export_status_valid CHECK (
            status IN ('pending', 'processing', 'ready', 'failed', 'expired', 'cancelled')),
    part_bytes        bigint NOT NULL CONSTRAINT export_part_bytes_positive CHECK (part_bytes > 0),
    include_comments  boolean NOT NULL DEFAULT true,
    include_reactions boolean NOT NULL DEFAULT true,
    send_email        boolean NOT NULL DEFAULT false,
    -- The artworks planned into parts (0 until the worker has planned them).
    artwork_count     integer NOT NULL DEFAULT 0,
    progress_done     integer NOT NULL DEFAULT 0,
    -- The bytes of the parts built so far.
    total_bytes       bigint NOT NULL DEFAULT 0,
    skipped           jsonb NOT NULL DEFAULT '[]'::jsonb,
    error_message     text CONSTRAINT export_error_message_short CHECK (length(error_message) <= 500),
    attempts          integer NOT NULL DEFAULT 0,
    claim_token       uuid,
    heartbeat_at      timestamptz,
    retry_at          timestamptz,
    email_sent_at     timestamptz,
    email_attempts    integer NOT NULL DEFAULT 0,
    request_id        varchar(64),
    -- Bumped in the same transaction as any change of the export's parts: the export's event
    -- (which carries its parts) fires on it.
    parts_version     integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz,
    expires_at        timestamptz
);

-- One running export per user, whatever races past the service's own check.
CREATE UNIQUE INDEX export_one_running_idx ON exports (user_id)
    WHERE status IN ('pending', 'processing');
CREATE INDEX export_user_created_idx ON exports (user_id, created_at DESC);
CREATE INDEX export_ready_expires_idx ON exports (expires_at) WHERE status = 'ready';
CREATE INDEX export_unfinished_idx ON exports (created_at) WHERE status IN ('pending', 'processing');
CREATE INDEX export_terminal_idx ON exports (completed_at)
    WHERE status IN ('failed', 'expired', 'cancelled');

CREATE TRIGGER export_touch BEFORE UPDATE ON exports
    FOR EACH ROW EXECUTE FUNCTION bdr_touch();

-- The parts, planned once (which posts go into which part, by declared size) so a part keeps
-- its number and its posts across retries: a part already published is never rebuilt.
CREATE TABLE export_parts (
    export_id       uuid NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    number          integer NOT NULL CONSTRAINT export_part_number_positive CHECK (number >= 1),
    status          varchar(20) NOT NULL DEFAULT 'pending'
        CONSTRAINT export_part_status_valid CHECK (
            status IN ('pending', 'processing', 'ready', 'expired', 'cancelled', 'failed')),
    post_ids        integer[] NOT NULL,
    -- Planned; once ready, the artworks the part holds.
    artwork_count   integer NOT NULL,
    estimated_bytes bigint NOT NULL,
    file_path       varchar(500),
    file_size_bytes bigint,
    sha256          char(64),
    skipped         jsonb NOT NULL DEFAULT '[]'::jsonb,
    completed_at    timestamptz,
    PRIMARY KEY (export_id, number)
);

-- An export as the API shows it (without its URLs, which the service adds): the event payload
-- and the stream's snapshot are made here, so both carry the parts as they are in the same
-- transaction. `kind` tells a stream's reader that it is an export, not a BDR.
CREATE FUNCTION export_payload(e exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object(
        'kind', 'export', 'id', e.id, 'status', e.status, 'created_at', e.created_at,
        'started_at', e.started_at, 'completed_at', e.completed_at, 'expires_at', e.expires_at,
        'part_bytes', e.part_bytes, 'include_comments', e.include_comments,
        'include_reactions', e.include_reactions, 'send_email', e.send_email,
        'artwork_count', e.artwork_count, 'progress_done', e.progress_done,
        'total_bytes', e.total_bytes, 'skipped', e.skipped, 'error_message', e.error_message,
        'user_sqid', e.user_sqid,
        'parts', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                'number', p.number, 'status', p.status, 'artwork_count', p.artwork_count,
                'file_size_bytes', p.file_size_bytes, 'sha256', p.sha256) ORDER BY p.number)
            FROM export_parts p WHERE p.export_id = e.id), '[]'::jsonb))
$$;

-- Export events go to the same table and channel as BDR events (`bdr_id` holds the export's
-- id), so one sequence orders both and Last-Event-ID resumes both. Exports change rarely: one
-- trigger call per row.
CREATE FUNCTION export_emit_event() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    event_id bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NOT (
           OLD.status IS DISTINCT FROM NEW.status
           OR OLD.progress_done IS DISTINCT FROM NEW.progress_done
           OR OLD.parts_version IS DISTINCT FROM NEW.parts_version
           OR OLD.artwork_count IS DISTINCT FROM NEW.artwork_count
           OR OLD.total_bytes IS DISTINCT FROM NEW.total_bytes
           OR OLD.skipped IS DISTINCT FROM NEW.skipped
           OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
           OR OLD.error_message IS DISTINCT FROM NEW.error_message) THEN
        RETURN NULL;  -- a heartbeat or a claim: nothing the item shows
    END IF;
    PERFORM pg_advisory_xact_lock(5064068);  -- ids visible in commit order (see 0005)
    INSERT INTO bdr_events (bdr_id, user_id, payload)
    VALUES (NEW.id, NEW.user_id, export_payload(NEW))
    RETURNING id INTO event_id;
    PERFORM pg_notify('pmd_bdr_events', event_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER export_emit AFTER INSERT OR UPDATE ON exports
    FOR EACH ROW EXECUTE FUNCTION export_emit_event();

-- Exports an artist keeps (issue 45). A BDR carries the post's `.mkpx` layers file unless the
-- request says `include_layers: false`; an export may ask for the host's upscaled copies.
-- Additive for a rolling deploy: columns with defaults, payload functions with keys more.
ALTER TABLE batch_download_requests ADD COLUMN include_layers boolean NOT NULL DEFAULT true;
ALTER TABLE exports ADD COLUMN include_upscaled boolean NOT NULL DEFAULT false;

-- Incremental exports. An export that reached `ready` records the posts it holds (its own and,
-- for an incremental one, those of the export it follows still there): the next incremental
-- export takes the posts created or changed since this one started, or not among these, and
-- lists as removed those among these that are gone. The follower copies what it needs at its
-- request (`follows_started_at`, `base_post_ids`), so the export it follows may be purged.
ALTER TABLE exports ADD COLUMN follows_id uuid,
    ADD COLUMN follows_started_at timestamptz,
    ADD COLUMN base_post_ids integer[],
    ADD COLUMN covered_post_ids integer[],
    ADD COLUMN removed jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD CONSTRAINT export_follows_whole CHECK (
        (follows_id IS NULL) = (follows_started_at IS NULL)
        AND (follows_id IS NULL) = (base_post_ids IS NULL));

-- As in 0007, with `include_layers` in the payload (bdr/schemas.py ITEM_COLUMNS).
CREATE OR REPLACE FUNCTION bdr_emit_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    last_id bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE announced) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(5064068);
    WITH added AS (
        INSERT INTO bdr_events (bdr_id, user_id, payload)
        SELECT n.id, n.user_id, jsonb_build_object(
            'id', n.id, 'status', n.status, 'artwork_count', n.artwork_count,
            'include_comments', n.include_comments, 'include_reactions', n.include_reactions,
            'send_email', n.send_email, 'created_at', n.created_at, 'started_at', n.started_at,
            'completed_at', n.completed_at, 'expires_at', n.expires_at,
            'error_message', n.error_message, 'file_size_bytes', n.file_size_bytes,
            'progress_done', n.progress_done, 'skipped', n.skipped, 'user_sqid', n.user_sqid,
            'requested_by', n.requested_by, 'removed_at', n.removed_at,
            'include_layers', n.include_layers)
        FROM new_rows AS n WHERE n.announced
        RETURNING id
    )
    SELECT max(id) INTO last_id FROM added;
    PERFORM pg_notify('pmd_bdr_events', last_id::text);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION bdr_emit_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    changed CONSTANT text := $q$
        FROM new_rows AS n JOIN old_rows AS o USING (id)
        WHERE n.announced
          AND (NOT o.announced
               OR o.status IS DISTINCT FROM n.status
               OR o.progress_done IS DISTINCT FROM n.progress_done
               OR o.skipped IS DISTINCT FROM n.skipped
               OR o.expires_at IS DISTINCT FROM n.expires_at
               OR o.error_message IS DISTINCT FROM n.error_message
               OR o.removed_at IS DISTINCT FROM n.removed_at)
    $q$;
    any_change boolean;
    last_id bigint;
BEGIN
    EXECUTE 'SELECT count(*) > 0 ' || changed INTO any_change;
    IF NOT any_change THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(5064068);
    EXECUTE $q$
        WITH added AS (
            INSERT INTO bdr_events (bdr_id, user_id, payload)
            SELECT n.id, n.user_id, jsonb_build_object(
                'id', n.id, 'status', n.status, 'artwork_count', n.artwork_count,
                'include_comments', n.include_comments, 'include_reactions', n.include_reactions,
                'send_email', n.send_email, 'created_at', n.created_at, 'started_at', n.started_at,
                'completed_at', n.completed_at, 'expires_at', n.expires_at,
                'error_message', n.error_message, 'file_size_bytes', n.file_size_bytes,
                'progress_done', n.progress_done, 'skipped', n.skipped, 'user_sqid', n.user_sqid,
                'requested_by', n.requested_by, 'removed_at', n.removed_at,
            'include_layers', n.include_layers)
    $q$ || changed || $q$
            RETURNING id
        )
        SELECT max(id) FROM added
    $q$ INTO last_id;
    PERFORM pg_notify('pmd_bdr_events', last_id::text);
    RETURN NULL;
END
$$;


-- The item and an event's payload of an export as in 0007 and 0008, with the new keys.
CREATE FUNCTION export_payload_0011(e exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object(
        'include_upscaled', e.include_upscaled, 'follows_export_id', e.follows_id,
        'changed_since', e.follows_started_at,
        'removed_count', CASE jsonb_typeof(e.removed) WHEN 'array'
                              THEN jsonb_array_length(e.removed) ELSE 0 END)
$$;
ALTER FUNCTION export_payload(exports) RENAME TO export_payload_0007;
CREATE FUNCTION export_payload(e exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT export_payload_0007(e) || export_payload_0011(e)
$$;
ALTER FUNCTION export_event_payload(exports) RENAME TO export_event_payload_0008;
CREATE FUNCTION export_event_payload(e exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT export_event_payload_0008(e) || export_payload_0011(e)
$$;

-- Recurring exports: a schedule is a row, not a timer, so it survives restarts and the loss of
-- a worker; the sweep (every minute, and at each worker's start) starts what is due. One
-- schedule a user; `remaining` counts the exports still to start after the first.
CREATE TABLE export_schedules (
    user_id           integer PRIMARY KEY,
    user_sqid         varchar(16),
    every_days        integer NOT NULL CONSTRAINT export_schedule_every_positive CHECK (every_days >= 1),
    remaining         integer NOT NULL CONSTRAINT export_schedule_remaining_sane CHECK (remaining >= 0),
    next_at           timestamptz NOT NULL,
    last_export_id    uuid,
    part_bytes        bigint NOT NULL,
    include_comments  boolean NOT NULL,
    include_reactions boolean NOT NULL,
    include_upscaled  boolean NOT NULL,
    send_email        boolean NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    cancelled_at      timestamptz
);
CREATE INDEX export_schedule_due_idx ON export_schedules (next_at)
    WHERE cancelled_at IS NULL AND remaining > 0;
ALTER TABLE exports ADD COLUMN scheduled boolean NOT NULL DEFAULT false;

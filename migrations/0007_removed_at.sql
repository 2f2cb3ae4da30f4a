-- When the owner (or a moderator acting for them) removed a finished download or export with
-- DELETE. Its status becomes `expired`, as when its date passes: the status set is the API's
-- contract and stays as it is. Without this the API could not tell a removal from an expiry,
-- and a page could only guess it from `expires_at` still being ahead (wrong once it passes).
-- Null for everything else: an expiry by the daily cleanup, a lost file, a cancel, a failure.
-- Additive (a nullable column, functions replaced with one key more): a release without it
-- keeps working beside this schema during a rolling deploy.
ALTER TABLE batch_download_requests ADD COLUMN removed_at timestamptz,
    ADD CONSTRAINT bdr_removed_is_expired CHECK (removed_at IS NULL OR status = 'expired');
ALTER TABLE exports ADD COLUMN removed_at timestamptz,
    ADD CONSTRAINT export_removed_is_expired CHECK (removed_at IS NULL OR status = 'expired');

-- As in 0005, with `removed_at` in the payload (bdr/schemas.py ITEM_COLUMNS).
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
            'requested_by', n.requested_by, 'removed_at', n.removed_at)
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
                'requested_by', n.requested_by, 'removed_at', n.removed_at)
    $q$ || changed || $q$
            RETURNING id
        )
        SELECT max(id) FROM added
    $q$ INTO last_id;
    PERFORM pg_notify('pmd_bdr_events', last_id::text);
    RETURN NULL;
END
$$;

-- As in 0006, with `removed_at`.
CREATE OR REPLACE FUNCTION export_payload(e exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object(
        'kind', 'export', 'id', e.id, 'status', e.status, 'created_at', e.created_at,
        'started_at', e.started_at, 'completed_at', e.completed_at, 'expires_at', e.expires_at,
        'removed_at', e.removed_at,
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

-- The export's payload functions and its events' trigger function, generated from
-- pmd_service/features/exports/schemas.py Payload by `python -m pmd_service.web.event_kinds`
-- (features/exports/event_sql.py): edit those, not this file. The migration runner re-creates them
-- whenever this file changes (core/migrate.py).

-- An export as the API shows it (without its URLs, which the service adds): made here, so it
-- carries the parts as they are in the same transaction. `kind` tells a stream's reader that
-- it is an export, not a BDR.
CREATE OR REPLACE FUNCTION export_payload(r exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object(
        'id', r.id,
        'status', r.status,
        'created_at', r.created_at,
        'started_at', r.started_at,
        'completed_at', r.completed_at,
        'expires_at', r.expires_at,
        'removed_at', r.removed_at,
        'part_bytes', r.part_bytes,
        'include_comments', r.include_comments,
        'include_reactions', r.include_reactions,
        'send_email', r.send_email,
        'include_upscaled', r.include_upscaled,
        'layout', r.layout,
        'follows_export_id', r.follows_id,
        'changed_since', r.follows_started_at,
        'removed_count', CASE jsonb_typeof(r.removed) WHEN 'array' THEN jsonb_array_length(r.removed) ELSE 0 END,
        'artwork_count', r.artwork_count,
        'total_bytes', r.total_bytes,
        'error_message', r.error_message,
        'error_code', r.error_code,
        'progress_done', r.progress_done,
        'parts', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                    'number', p.number,
                    'status', p.status,
                    'artwork_count', p.artwork_count,
                    'file_size_bytes', p.file_size_bytes,
                    'sha256', p.sha256)
                ORDER BY p.number)
            FROM export_parts p WHERE p.export_id = r.id), '[]'::jsonb),
        'skipped', r.skipped,
        'skipped_count', CASE jsonb_typeof(r.skipped) WHEN 'array' THEN jsonb_array_length(r.skipped) ELSE 0 END,
        'parts_count', (SELECT count(*) FROM export_parts p WHERE p.export_id = r.id),
        'kind', 'export',
        'user_sqid', r.user_sqid)
$$;

-- An event's payload stays small whatever the export (see 0008): counts for the lists, and
-- at most a few parts.
CREATE OR REPLACE FUNCTION export_event_payload(r exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object(
        'id', r.id,
        'status', r.status,
        'created_at', r.created_at,
        'started_at', r.started_at,
        'completed_at', r.completed_at,
        'expires_at', r.expires_at,
        'removed_at', r.removed_at,
        'part_bytes', r.part_bytes,
        'include_comments', r.include_comments,
        'include_reactions', r.include_reactions,
        'send_email', r.send_email,
        'include_upscaled', r.include_upscaled,
        'layout', r.layout,
        'follows_export_id', r.follows_id,
        'changed_since', r.follows_started_at,
        'removed_count', CASE jsonb_typeof(r.removed) WHEN 'array' THEN jsonb_array_length(r.removed) ELSE 0 END,
        'artwork_count', r.artwork_count,
        'total_bytes', r.total_bytes,
        'error_message', r.error_message,
        'error_code', r.error_code,
        'progress_done', r.progress_done,
        'parts', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                    'number', p.number,
                    'status', p.status,
                    'artwork_count', p.artwork_count,
                    'file_size_bytes', p.file_size_bytes,
                    'sha256', p.sha256)
                ORDER BY p.number)
            FROM (
                SELECT number, status, artwork_count, file_size_bytes, sha256 FROM export_parts p WHERE p.export_id = r.id
                ORDER BY p.status = 'processing' DESC, p.status = 'ready' DESC,
                         CASE WHEN p.status = 'ready' THEN -p.number ELSE p.number END
                LIMIT 12
            ) AS p), '[]'::jsonb),
        'skipped', '[]'::jsonb,
        'skipped_count', CASE jsonb_typeof(r.skipped) WHEN 'array' THEN jsonb_array_length(r.skipped) ELSE 0 END,
        'parts_count', (SELECT count(*) FROM export_parts p WHERE p.export_id = r.id),
        'kind', 'export',
        'user_sqid', r.user_sqid)
$$;

-- The table rings the stream's doorbell itself (migration 0018).
-- contract: pmd_bdr_events, expanded in 0018
CREATE OR REPLACE FUNCTION export_emit_event() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NOT (
           OLD.status IS DISTINCT FROM NEW.status
           OR OLD.created_at IS DISTINCT FROM NEW.created_at
           OR OLD.started_at IS DISTINCT FROM NEW.started_at
           OR OLD.completed_at IS DISTINCT FROM NEW.completed_at
           OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
           OR OLD.removed_at IS DISTINCT FROM NEW.removed_at
           OR OLD.part_bytes IS DISTINCT FROM NEW.part_bytes
           OR OLD.include_comments IS DISTINCT FROM NEW.include_comments
           OR OLD.include_reactions IS DISTINCT FROM NEW.include_reactions
           OR OLD.send_email IS DISTINCT FROM NEW.send_email
           OR OLD.include_upscaled IS DISTINCT FROM NEW.include_upscaled
           OR OLD.layout IS DISTINCT FROM NEW.layout
           OR OLD.follows_id IS DISTINCT FROM NEW.follows_id
           OR OLD.follows_started_at IS DISTINCT FROM NEW.follows_started_at
           OR OLD.removed IS DISTINCT FROM NEW.removed
           OR OLD.artwork_count IS DISTINCT FROM NEW.artwork_count
           OR OLD.total_bytes IS DISTINCT FROM NEW.total_bytes
           OR OLD.error_message IS DISTINCT FROM NEW.error_message
           OR OLD.error_code IS DISTINCT FROM NEW.error_code
           OR OLD.progress_done IS DISTINCT FROM NEW.progress_done
           OR OLD.parts_version IS DISTINCT FROM NEW.parts_version
           OR OLD.skipped IS DISTINCT FROM NEW.skipped
           OR OLD.user_sqid IS DISTINCT FROM NEW.user_sqid) THEN
        RETURN NULL;  -- a heartbeat or a claim: nothing the item shows
    END IF;
    PERFORM pg_advisory_xact_lock(5064068);  -- ids visible in commit order (see 0005)
    INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
    VALUES (NEW.id, NEW.user_id, 'export', 'owner', export_event_payload(NEW));
    RETURN NULL;
END
$$;

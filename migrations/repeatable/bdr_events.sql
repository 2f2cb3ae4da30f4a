-- The BDR events' trigger functions, generated from pmd_service/features/bdr/schemas.py ItemRow
-- by `python -m pmd_service.web.event_kinds` (features/bdr/event_sql.py): edit those, not this
-- file. The migration runner re-creates them whenever this file changes (core/migrate.py).

-- SET search_path FROM CURRENT: the functions find stream_events in the service's schema even
-- when rows are changed from a session with another search path (an operator's psql). The
-- table rings the stream's doorbell itself (migration 0018).
-- contract: pmd_bdr_events, expanded in 0018
CREATE OR REPLACE FUNCTION bdr_emit_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    -- Most inserts are unannounced (the server announces them after its reply): no event, so
    -- no lock either.
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE announced) THEN
        RETURN NULL;
    END IF;
    -- Readers resume with "id > last seen", which is only safe if ids become visible in
    -- commit order: the lock, taken before the first id is drawn and held to commit,
    -- serialises event-producing transactions.
    PERFORM pg_advisory_xact_lock(5064068);
    INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
    SELECT r.id, r.user_id, 'bdr', 'watchers', jsonb_build_object(
                'id', r.id,
                'status', r.status,
                'artwork_count', r.artwork_count,
                'include_comments', r.include_comments,
                'include_reactions', r.include_reactions,
                'send_email', r.send_email,
                'created_at', r.created_at,
                'started_at', r.started_at,
                'completed_at', r.completed_at,
                'expires_at', r.expires_at,
                'error_message', r.error_message,
                'file_size_bytes', r.file_size_bytes,
                'progress_done', r.progress_done,
                'skipped', r.skipped,
                'user_sqid', r.user_sqid,
                'requested_by', r.requested_by,
                'removed_at', r.removed_at,
                'include_layers', r.include_layers,
                'error_code', r.error_code)
    FROM new_rows AS r WHERE r.announced;
    RETURN NULL;
END
$$;

-- The statements are EXECUTEd, so planned for each call (see 0005).
-- contract: pmd_bdr_events, expanded in 0018
CREATE OR REPLACE FUNCTION bdr_emit_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    -- Announced rows whose update changed what their item shows.
    changed CONSTANT text := $q$
        FROM new_rows AS r JOIN old_rows AS o USING (id)
        WHERE r.announced
          AND (NOT o.announced
               OR o.status IS DISTINCT FROM r.status
               OR o.artwork_count IS DISTINCT FROM r.artwork_count
               OR o.include_comments IS DISTINCT FROM r.include_comments
               OR o.include_reactions IS DISTINCT FROM r.include_reactions
               OR o.send_email IS DISTINCT FROM r.send_email
               OR o.created_at IS DISTINCT FROM r.created_at
               OR o.started_at IS DISTINCT FROM r.started_at
               OR o.completed_at IS DISTINCT FROM r.completed_at
               OR o.expires_at IS DISTINCT FROM r.expires_at
               OR o.error_message IS DISTINCT FROM r.error_message
               OR o.file_size_bytes IS DISTINCT FROM r.file_size_bytes
               OR o.progress_done IS DISTINCT FROM r.progress_done
               OR o.skipped IS DISTINCT FROM r.skipped
               OR o.user_sqid IS DISTINCT FROM r.user_sqid
               OR o.requested_by IS DISTINCT FROM r.requested_by
               OR o.removed_at IS DISTINCT FROM r.removed_at
               OR o.include_layers IS DISTINCT FROM r.include_layers
               OR o.error_code IS DISTINCT FROM r.error_code)
    $q$;
    any_change boolean;
BEGIN
    -- Heartbeats and claims change nothing an item shows: checked before the lock. A count,
    -- not EXISTS (see 0005).
    EXECUTE 'SELECT count(*) > 0 ' || changed INTO any_change;
    IF NOT any_change THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(5064068);  -- as in bdr_emit_inserted
    EXECUTE $q$
        INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
        SELECT r.id, r.user_id, 'bdr', 'watchers', jsonb_build_object(
                    'id', r.id,
                    'status', r.status,
                    'artwork_count', r.artwork_count,
                    'include_comments', r.include_comments,
                    'include_reactions', r.include_reactions,
                    'send_email', r.send_email,
                    'created_at', r.created_at,
                    'started_at', r.started_at,
                    'completed_at', r.completed_at,
                    'expires_at', r.expires_at,
                    'error_message', r.error_message,
                    'file_size_bytes', r.file_size_bytes,
                    'progress_done', r.progress_done,
                    'skipped', r.skipped,
                    'user_sqid', r.user_sqid,
                    'requested_by', r.requested_by,
                    'removed_at', r.removed_at,
                    'include_layers', r.include_layers,
                    'error_code', r.error_code)
    $q$ || changed;
    RETURN NULL;
END
$$;

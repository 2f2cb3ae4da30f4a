-- An export's event stays small whatever the export: it carries the counts (`skipped_count`,
-- `parts_count`) and the states of at most 12 parts, never a list that grows with the export.
-- The full item (every skipped artwork, every part) is `GET /api/pmd/exports/{id}`
-- (`export_payload`, unchanged). One account with thousands of skipped artworks made events
-- of tens of KB, written on every progress step (a few a second): 1.2 GB in `bdr_events` and
-- every server's recent-events cache grown past a GB.
--
-- The parts an event names: those being built, then the ready ones newest first (parts are
-- built in number order, so the highest-numbered ready part is the one just published), then
-- the rest in number order; shown in number order. An export of up to 12 parts (most) is
-- whole in every event; for a larger one a reader merges the parts by number and asks for
-- the item when `parts_count` says it holds fewer (pmd_service/exports/schemas.py keeps the
-- same rule for events written before this migration).
--
-- Additive for a rolling deploy: `skipped` stays in the payload, empty, so a release before
-- this one still reads these events.
CREATE FUNCTION export_event_payload(e exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object(
        'kind', 'export', 'id', e.id, 'status', e.status, 'created_at', e.created_at,
        'started_at', e.started_at, 'completed_at', e.completed_at, 'expires_at', e.expires_at,
        'removed_at', e.removed_at,
        'part_bytes', e.part_bytes, 'include_comments', e.include_comments,
        'include_reactions', e.include_reactions, 'send_email', e.send_email,
        'artwork_count', e.artwork_count, 'progress_done', e.progress_done,
        'total_bytes', e.total_bytes, 'skipped', '[]'::jsonb,
        'skipped_count', CASE jsonb_typeof(e.skipped) WHEN 'array'
                              THEN jsonb_array_length(e.skipped) ELSE 0 END,
        'error_message', e.error_message,
        'user_sqid', e.user_sqid,
        'parts_count', (SELECT count(*) FROM export_parts p WHERE p.export_id = e.id),
        'parts', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                'number', s.number, 'status', s.status, 'artwork_count', s.artwork_count,
                'file_size_bytes', s.file_size_bytes, 'sha256', s.sha256) ORDER BY s.number)
            FROM (
                SELECT p.number, p.status, p.artwork_count, p.file_size_bytes, p.sha256
                FROM export_parts p WHERE p.export_id = e.id
                ORDER BY p.status = 'processing' DESC, p.status = 'ready' DESC,
                         CASE WHEN p.status = 'ready' THEN -p.number ELSE p.number END
                LIMIT 12
            ) AS s), '[]'::jsonb))
$$;

CREATE OR REPLACE FUNCTION export_emit_event() RETURNS trigger LANGUAGE plpgsql
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
           OR OLD.error_message IS DISTINCT FROM NEW.error_message
           OR OLD.removed_at IS DISTINCT FROM NEW.removed_at) THEN
        RETURN NULL;  -- a heartbeat or a claim: nothing the item shows
    END IF;
    PERFORM pg_advisory_xact_lock(5064068);  -- ids visible in commit order (see 0005)
    INSERT INTO bdr_events (bdr_id, user_id, payload)
    VALUES (NEW.id, NEW.user_id, export_event_payload(NEW))
    RETURNING id INTO event_id;
    PERFORM pg_notify('pmd_bdr_events', event_id::text);
    RETURN NULL;
END
$$;

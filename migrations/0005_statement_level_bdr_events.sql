-- BDR events from one trigger call per statement instead of one per row. A statement that
-- changed 2,000 rows (a mass cancel, the expiry cleanup, a burst of progress) paid 2,000
-- PL/pgSQL calls, advisory-lock checks, single-row INSERTs and NOTIFYs (~75 us a row); reading
-- the changed rows from the statement's transition tables does it in one INSERT ... SELECT,
-- one lock and one NOTIFY. What becomes an event is unchanged: an announced insert, and an
-- update that announces a row or changes what its item shows.
--
-- The payload keeps only what a BDR item is made of (bdr/schemas.py ITEM_COLUMNS, which a
-- test holds this function to): to_jsonb of the whole row, then dropping two keys, was the
-- larger part of the trigger's time (~30 us a row against ~15 us).
DROP TRIGGER bdr_emit_on_insert ON batch_download_requests;
DROP TRIGGER bdr_emit_on_change ON batch_download_requests;
DROP FUNCTION bdr_emit_event();

-- SET search_path FROM CURRENT: the functions find bdr_events in the service's schema even
-- when rows are changed from a session with another search path (an operator's psql).
CREATE FUNCTION bdr_emit_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    last_id bigint;
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
    WITH added AS (
        INSERT INTO bdr_events (bdr_id, user_id, payload)
        SELECT n.id, n.user_id, jsonb_build_object(
            'id', n.id, 'status', n.status, 'artwork_count', n.artwork_count,
            'include_comments', n.include_comments, 'include_reactions', n.include_reactions,
            'send_email', n.send_email, 'created_at', n.created_at, 'started_at', n.started_at,
            'completed_at', n.completed_at, 'expires_at', n.expires_at,
            'error_message', n.error_message, 'file_size_bytes', n.file_size_bytes,
            'progress_done', n.progress_done, 'skipped', n.skipped, 'user_sqid', n.user_sqid,
            'requested_by', n.requested_by)
        FROM new_rows AS n WHERE n.announced
        RETURNING id
    )
    SELECT max(id) INTO last_id FROM added;
    -- One doorbell per statement (the listener reads everything after the last id it saw);
    -- it carries the statement's last event id, for whoever watches the channel by hand.
    PERFORM pg_notify('pmd_bdr_events', last_id::text);
    RETURN NULL;
END
$$;

-- Rows are paired by id: the service never changes a BDR's id. The statements are EXECUTEd,
-- so planned for each call: PL/pgSQL would otherwise keep the plan made for the first call of
-- the session, and a session that first changed one row (the worker's progress, a cancel)
-- joined a later mass update's 2,000 rows by nested loop (1.8 s instead of ~20 ms).
CREATE FUNCTION bdr_emit_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    -- Announced rows whose update changed what their item shows.
    changed CONSTANT text := $q$
        FROM new_rows AS n JOIN old_rows AS o USING (id)
        WHERE n.announced
          AND (NOT o.announced
               OR o.status IS DISTINCT FROM n.status
               OR o.progress_done IS DISTINCT FROM n.progress_done
               OR o.skipped IS DISTINCT FROM n.skipped
               OR o.expires_at IS DISTINCT FROM n.expires_at
               OR o.error_message IS DISTINCT FROM n.error_message)
    $q$;
    any_change boolean;
    last_id bigint;
BEGIN
    -- The worker's heartbeats and claims change nothing an item shows: checked before the
    -- lock, so they never wait for (or hold up) a transaction that does emit. A count, not
    -- EXISTS: expecting an early match, the planner picks a nested loop for EXISTS, which
    -- walks old_rows once per new row when nothing matches (1.5 s for 2,000 heartbeats).
    EXECUTE 'SELECT count(*) > 0 ' || changed INTO any_change;
    IF NOT any_change THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(5064068);  -- as in bdr_emit_inserted
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
                'requested_by', n.requested_by)
    $q$ || changed || $q$
            RETURNING id
        )
        SELECT max(id) FROM added
    $q$ INTO last_id;
    PERFORM pg_notify('pmd_bdr_events', last_id::text);
    RETURN NULL;
END
$$;

-- PostgreSQL allows transition tables only on a trigger for a single event: two triggers.
CREATE TRIGGER bdr_emit_on_insert AFTER INSERT ON batch_download_requests
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bdr_emit_inserted();

CREATE TRIGGER bdr_emit_on_change AFTER UPDATE ON batch_download_requests
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bdr_emit_changed();

-- The events table and its channel serve every feature of the stream (BDRs, exports, posts'
-- bulk actions): they are named for the stream, `stream_events` and `pmd_stream_events`, no
-- longer for BDRs, and an event's `bdr_id` (a BDR's, an export's or an action's id) is its
-- `subject_id`.
--
-- Expand, for a rolling upgrade: the previous release reads and deletes events through
-- `bdr_events` (now a view of the table, which PostgreSQL updates through), LISTENs on
-- `pmd_bdr_events`, and its migration runner may put its own trigger functions back (they
-- insert into `bdr_events`, and notify its channel themselves). So the doorbell is rung by
-- the table itself, on both channels, whichever release's functions wrote the rows. A
-- contract release, once no earlier one runs, drops the view and the old channel.
ALTER TABLE bdr_events RENAME TO stream_events;
ALTER TABLE stream_events RENAME COLUMN bdr_id TO subject_id;
ALTER SEQUENCE bdr_events_id_seq RENAME TO stream_events_id_seq;
ALTER INDEX bdr_events_pkey RENAME TO stream_events_pkey;
ALTER INDEX bdr_events_user_idx RENAME TO stream_events_user_idx;
ALTER INDEX bdr_events_created_idx RENAME TO stream_events_created_idx;

CREATE VIEW bdr_events AS
    SELECT id, subject_id AS bdr_id, user_id, created_at, payload FROM stream_events;

-- One doorbell per statement, carrying the last id it wrote (the listener reads everything
-- after the last id it saw). Identical notifications of one transaction are delivered once,
-- so the previous release's functions, which also ring `pmd_bdr_events`, ring it once.
CREATE FUNCTION stream_events_ring() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    last_id bigint;
BEGIN
    SELECT max(id) INTO last_id FROM added;
    IF last_id IS NOT NULL THEN
        PERFORM pg_notify('pmd_stream_events', last_id::text);
        PERFORM pg_notify('pmd_bdr_events', last_id::text);  -- the previous release's
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER stream_events_ring AFTER INSERT ON stream_events
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION stream_events_ring();

-- As in 0015, without its own doorbell (the table rings it).
CREATE OR REPLACE FUNCTION pmd_posts_changed(owner integer, act text, ids integer[],
                                             act_id uuid, most_ids integer)
RETURNS bigint LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    event_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(5064068);  -- ids visible in commit order (see 0005)
    INSERT INTO stream_events (subject_id, user_id, payload)
    VALUES (act_id, -owner, jsonb_build_object(
        'kind', 'posts', 'action', act,
        'post_ids', CASE WHEN cardinality(ids) <= most_ids THEN to_jsonb(ids) END,
        'changed_count', cardinality(ids)))
    RETURNING id INTO event_id;
    RETURN event_id;
END
$$;

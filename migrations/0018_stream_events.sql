-- The events serve every feature of the stream (BDRs, exports, posts' bulk actions), so the
-- code names them for it: `stream_events`, an event's `bdr_id` (a BDR's, an export's or an
-- action's id) as `subject_id`, and the doorbell `pmd_stream_events`.
--
-- An expand, as a rename goes (docs/operations.md, "Upgrades"): the new name is a view of
-- `bdr_events`, which PostgreSQL reads and writes through, and the table rings the new
-- doorbell itself, once a statement, whichever release's trigger functions wrote the rows
-- (the previous release's migration runner puts its own back). The functions still ring
-- `pmd_bdr_events`, where the previous release listens. The contract, a release later,
-- renames the table and drops the old doorbell.
CREATE VIEW stream_events AS
    SELECT id, bdr_id AS subject_id, user_id, created_at, payload FROM bdr_events;

-- The statement's last id: the listener reads everything after the last id it saw.
CREATE FUNCTION stream_events_ring() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    last_id bigint;
BEGIN
    SELECT max(id) INTO last_id FROM added;
    IF last_id IS NOT NULL THEN
        PERFORM pg_notify('pmd_stream_events', last_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER stream_events_ring AFTER INSERT ON bdr_events
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION stream_events_ring();

-- Every insert and every visible change of a BDR becomes an event with a monotonically
-- increasing id (the SSE `id:`), and a NOTIFY doorbell carrying just that id and the user.
-- Subscribers replay from the table, so payload size never approaches NOTIFY's 8000-byte cap.
CREATE TABLE bdr_events (
    id         bigserial PRIMARY KEY,
    bdr_id     uuid NOT NULL,
    user_id    integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload    jsonb NOT NULL
);
CREATE INDEX bdr_events_user_idx ON bdr_events (user_id, id);
CREATE INDEX bdr_events_created_idx ON bdr_events (created_at);

-- SET search_path FROM CURRENT: the function finds bdr_events in the service's schema even
-- when the row is changed from a session with another search path (an operator's psql).
CREATE FUNCTION bdr_emit_event() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    event_id bigint;
BEGIN
    -- Readers resume with "id > last seen", which is only safe if ids become visible in
    -- commit order. Serialising event-producing transactions from here to commit guarantees
    -- that; they are single-row updates held for milliseconds.
    PERFORM pg_advisory_xact_lock(5064068);
    INSERT INTO bdr_events (bdr_id, user_id, payload)
    VALUES (NEW.id, NEW.user_id, to_jsonb(NEW) - 'post_ids' - 'claim_token')
    RETURNING id INTO event_id;
    PERFORM pg_notify('pmd_bdr_events', event_id::text || ':' || NEW.user_id::text);
    RETURN NULL;
END
$$;

-- A row inserted unannounced (see `announced`) has its first event when it is announced.
CREATE TRIGGER bdr_emit_on_insert AFTER INSERT ON batch_download_requests
    FOR EACH ROW WHEN (NEW.announced) EXECUTE FUNCTION bdr_emit_event();

CREATE TRIGGER bdr_emit_on_change AFTER UPDATE ON batch_download_requests
    FOR EACH ROW
    WHEN (NEW.announced
          AND (NOT OLD.announced
               OR OLD.status IS DISTINCT FROM NEW.status
               OR OLD.progress_done IS DISTINCT FROM NEW.progress_done
               OR OLD.skipped IS DISTINCT FROM NEW.skipped
               OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
               OR OLD.error_message IS DISTINCT FROM NEW.error_message))
    EXECUTE FUNCTION bdr_emit_event();

-- `update_seq` was bumped on every update and never read: SSE orders by the events table's ids.
ALTER TABLE batch_download_requests DROP COLUMN update_seq;

CREATE OR REPLACE FUNCTION bdr_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

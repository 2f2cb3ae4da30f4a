-- An event's kind and audience become columns of the events table, which the stream reads
-- (pmd_service/sse/kinds.py): its kind names the feature's declaration that frames it, and its
-- audience whose streams get it (`owner`: the user's own; `watchers`: the user's own and a
-- moderator's watching the user), in place of a payload without `kind` taken for a download
-- and an export told apart by its frame's first bytes.
--
-- An expand of the events' rename (0018), as docs/operations.md's "Upgrades" says: the table
-- keeps the previous releases' name and columns, which they read and write (0.1.0 `bdr_events`,
-- 0.2.0 the view `stream_events`), and gains the new columns, which the view shows. The
-- contract, a release later, renames the table to `stream_events` (its `bdr_id` to
-- `subject_id`) in place of the view, and drops the old doorbell.
ALTER TABLE bdr_events ADD COLUMN kind text, ADD COLUMN audience text;

-- The rows a previous release's functions write (its migration runner puts them back) name
-- neither: they are filled as that release tells its kinds apart, a BDR's payload having no
-- `kind`, and an export's events being its owner's alone. This release's writers name both.
CREATE FUNCTION stream_events_labelled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.kind := coalesce(NEW.kind, NEW.payload->>'kind', 'bdr');
    NEW.audience := coalesce(
        NEW.audience, CASE NEW.kind WHEN 'export' THEN 'owner' ELSE 'watchers' END);
    RETURN NEW;
END
$$;

CREATE TRIGGER stream_events_labelled BEFORE INSERT ON bdr_events
    FOR EACH ROW WHEN (NEW.kind IS NULL OR NEW.audience IS NULL)
    EXECUTE FUNCTION stream_events_labelled();

-- The day's events already written (the cleanup keeps a day).
UPDATE bdr_events
SET kind = coalesce(payload->>'kind', 'bdr'),
    audience = CASE coalesce(payload->>'kind', 'bdr') WHEN 'export' THEN 'owner' ELSE 'watchers' END
WHERE kind IS NULL OR audience IS NULL;

-- Columns are only added at the end of a view (its earlier ones stay as 0.2.0 reads them).
CREATE OR REPLACE VIEW stream_events AS
    SELECT id, bdr_id AS subject_id, user_id, created_at, payload, kind, audience FROM bdr_events;

-- A posts event names its kind and audience (posts/events.py) itself; still filed under
-- -owner for 0.1.0, whose servers frame every row they read (see 0015).
CREATE OR REPLACE FUNCTION pmd_posts_changed(owner integer, act text, ids integer[],
                                             act_id uuid, most_ids integer)
RETURNS bigint LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    event_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(5064068);  -- ids visible in commit order (see 0005)
    INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
    VALUES (act_id, -owner, 'posts', 'watchers', jsonb_build_object(
        'kind', 'posts', 'action', act,
        'post_ids', CASE WHEN cardinality(ids) <= most_ids THEN to_jsonb(ids) END,
        'changed_count', cardinality(ids)))
    RETURNING id INTO event_id;
    PERFORM pg_notify('pmd_bdr_events', event_id::text);
    RETURN event_id;
END
$$;

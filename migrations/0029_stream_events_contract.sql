-- The contract of the events' rename (0018, 0025), now that the previous release, 0.2.0, reads
-- and writes them only as the view `stream_events` and hears only `pmd_stream_events`: the
-- table takes the view's name, `bdr_id` becomes `subject_id`, and no function rings
-- `pmd_bdr_events`, which only 0.1.0 heard. 0.2.0's runner may put its trigger functions back
-- mid-upgrade (migrations/repeatable/ at its tag): they write `stream_events (subject_id,
-- user_id, payload)`, which the table still takes, labelled by its trigger (0025).
-- contract: stream_events, expanded in 0018
DROP VIEW stream_events;
-- contract: bdr_events, expanded in 0018
ALTER TABLE bdr_events RENAME TO stream_events;
-- contract: stream_events.bdr_id, expanded in 0018
ALTER TABLE stream_events RENAME COLUMN bdr_id TO subject_id;
-- contract: bdr_events_id_seq, expanded in 0018
ALTER SEQUENCE bdr_events_id_seq RENAME TO stream_events_id_seq;
-- contract: bdr_events_pkey, expanded in 0018
ALTER INDEX bdr_events_pkey RENAME TO stream_events_pkey;
-- contract: bdr_events_user_idx, expanded in 0018
ALTER INDEX bdr_events_user_idx RENAME TO stream_events_user_idx;
-- contract: bdr_events_created_idx, expanded in 0018
ALTER INDEX bdr_events_created_idx RENAME TO stream_events_created_idx;

-- A posts event was filed under -owner so that 0.1.0's servers, which frame every row they
-- read, never read one (0015); 0.2.0 reads either sign, and this release its owner's own id.
UPDATE stream_events SET user_id = -user_id WHERE user_id < 0;

-- contract: pmd_bdr_events, expanded in 0018
CREATE OR REPLACE FUNCTION pmd_posts_changed(owner integer, act text, ids integer[],
                                             act_id uuid, most_ids integer)
RETURNS bigint LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    event_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(5064068);  -- ids visible in commit order (see 0005)
    INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
    VALUES (act_id, owner, 'posts', 'watchers', jsonb_build_object(
        'kind', 'posts', 'action', act,
        'post_ids', CASE WHEN cardinality(ids) <= most_ids THEN to_jsonb(ids) END,
        'changed_count', cardinality(ids)))
    RETURNING id INTO event_id;
    RETURN event_id;
END
$$;

-- A change of posts (a bulk action, an undo) becomes an event of the stream, `posts_changed`,
-- written by the statement that changes them: its id comes from the same sequence as the BDR
-- and export events, under the same lock (see 0005), so `Last-Event-ID` resumes all three in
-- order and a resume replays it. It replaces `NOTIFY pmd_posts_changed`, which nothing heard.
--
-- Its row names the owner as `-user_id`: a previous release's server routes every event by
-- `user_id` and reads every payload as a BDR or an export (sse/frames.py), so a row under the
-- owner's own id would be an error on its every stream resume during a rolling deploy; under
-- a user id no stream watches, it never reads one. This release reads both signs
-- (sse/hub.py, sse/replay.py). `bdr_id` holds the action's id (bulk_actions.id).
--
-- The payload stays small whatever the action: the ids only when there are at most
-- `most_ids` (posts/live.py), always how many changed.
CREATE FUNCTION pmd_posts_changed(owner integer, act text, ids integer[], act_id uuid,
                                  most_ids integer) RETURNS bigint LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    event_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(5064068);  -- ids visible in commit order (see 0005)
    INSERT INTO bdr_events (bdr_id, user_id, payload)
    VALUES (act_id, -owner, jsonb_build_object(
        'kind', 'posts', 'action', act,
        'post_ids', CASE WHEN cardinality(ids) <= most_ids THEN to_jsonb(ids) END,
        'changed_count', cardinality(ids)))
    RETURNING id INTO event_id;
    PERFORM pg_notify('pmd_bdr_events', event_id::text);
    RETURN event_id;
END
$$;

-- Every owner's write waits on the events' order lock (0005) until the transaction holding it
-- commits, so a writer takes it only once its events are built: a batch of cleanup policies'
-- runs now writes its runs' `posts_changed` events in one statement (one insert, one doorbell)
-- instead of one function call each, which held the lock from the batch's first event on.
-- The events keep their rows and payloads; only this release calls the new functions, and
-- `pmd_posts_changed` stays as 0029 left it (no old doorbell) but for the order of its steps.
CREATE FUNCTION pmd_posts_changed_payload(act text, ids integer[], most_ids integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'kind', 'posts', 'action', act,
        'post_ids', CASE WHEN cardinality(ids) <= most_ids THEN to_jsonb(ids) END,
        'changed_count', cardinality(ids))
$$;

-- contract: pmd_bdr_events, expanded in 0018
CREATE OR REPLACE FUNCTION pmd_posts_changed(owner integer, act text, ids integer[],
                                             act_id uuid, most_ids integer)
RETURNS bigint LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    payload jsonb := pmd_posts_changed_payload(act, ids, most_ids);
    event_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(5064068);  -- ids visible in commit order (see 0005)
    INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
    VALUES (act_id, owner, 'posts', 'watchers', payload)
    RETURNING id INTO event_id;
    RETURN event_id;
END
$$;

-- Change n: owners[n]'s action acts[n] (its id act_ids[n]) on the posts ids[firsts[n]:lasts[n]];
-- their events in that order. Returns how many it wrote.
CREATE FUNCTION pmd_posts_changed_each(owners integer[], acts text[], ids integer[],
                                       firsts integer[], lasts integer[], act_ids uuid[],
                                       most_ids integer)
RETURNS integer LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    payloads jsonb[] := ARRAY(
        SELECT pmd_posts_changed_payload(c.act, ids[c.first:c.last], most_ids)
        FROM unnest(acts, firsts, lasts) WITH ORDINALITY AS c(act, first, last, n)
        ORDER BY c.n);
    written integer;
BEGIN
    PERFORM pg_advisory_xact_lock(5064068);  -- ids visible in commit order (see 0005)
    INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
    SELECT e.act_id, e.owner, 'posts', 'watchers', e.payload
    FROM unnest(act_ids, owners, payloads) WITH ORDINALITY AS e(act_id, owner, payload, n)
    ORDER BY e.n;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$$;

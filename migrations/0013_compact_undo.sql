-- Undo history that keeps only what an action changed (0010 kept every column of every changed
-- post twice). An action's row now holds the changed posts' ids once, what the action wrote
-- when it is one value for all of them, and per post only what that value cannot tell: a
-- restore's deletion times and moderators' marks, a relicense's licenses and remix permissions,
-- a retag's added and removed tags (as indexes into the action's own lists). Each user's kept
-- history is capped in bytes (`history_bytes`); an action whose history was dropped to stay
-- within the cap keeps its row, so its undo can say why (`dropped_at`).
ALTER TABLE bulk_actions
    ADD COLUMN post_ids        integer[],
    ADD COLUMN wrote_flag      boolean,
    ADD COLUMN wrote_license   integer,
    ADD COLUMN tags_add        varchar[],
    ADD COLUMN tags_remove     varchar[],
    ADD COLUMN prior_dates     timestamptz[],
    ADD COLUMN prior_marks     integer[],
    ADD COLUMN prior_licenses  integer[],
    ADD COLUMN prior_remixable boolean[],
    ADD COLUMN tag_changes     jsonb,
    ADD COLUMN tags_after      uuid[],
    ADD COLUMN history_bytes   integer NOT NULL DEFAULT 0,
    ADD COLUMN dropped_at      timestamptz;
CREATE INDEX bulk_actions_owner_idx ON bulk_actions (owner_id, created_at DESC, id DESC);

-- History written before this release (bulk_action_posts, purged with its actions within a day
-- and dropped a release later) is not carried over: those undos answer 410 and say why.
UPDATE bulk_actions SET dropped_at = now() WHERE undone_at IS NULL;

-- A retag's change of one post's tags: the indexes (1-based) into the action's `add` list of
-- the tags it added, and into its `remove` list of the tags it removed, with the positions
-- they held.
CREATE FUNCTION pmd_tags_diff(before varchar[], after varchar[], add text[], remove text[])
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'a', (SELECT coalesce(jsonb_agg(n ORDER BY n), '[]') FROM unnest(add) WITH ORDINALITY AS a(t, n)
              WHERE t = ANY(after) AND NOT t = ANY(before)),
        'r', (SELECT coalesce(jsonb_agg(n ORDER BY array_position(before, t::varchar)), '[]')
              FROM unnest(remove) WITH ORDINALITY AS r(t, n)
              WHERE t = ANY(before) AND NOT t = ANY(after)),
        'i', (SELECT coalesce(jsonb_agg(array_position(before, t::varchar)
                                        ORDER BY array_position(before, t::varchar)), '[]')
              FROM unnest(remove) AS r(t)
              WHERE t = ANY(before) AND NOT t = ANY(after)))
$$;

-- The tags before a retag, from the tags it left (`current`) and its diff: the added tags
-- taken out (but those in `keep`, a moderator's), the removed ones put back where they were.
CREATE FUNCTION pmd_tags_undo(current varchar[], diff jsonb, add text[], remove text[],
                              keep varchar[])
RETURNS varchar[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    dropped text[] := ARRAY(SELECT add[n::int] FROM jsonb_array_elements_text(diff -> 'a') AS a(n));
    kept varchar[] := ARRAY(SELECT t FROM unnest(current) WITH ORDINALITY AS c(t, o)
                            WHERE NOT (t = ANY(dropped) AND NOT t = ANY(keep)) ORDER BY o);
    result varchar[] := '{}';
    k integer := 1;
    j integer;
BEGIN
    FOR j IN 0 .. jsonb_array_length(coalesce(diff -> 'r', '[]')) - 1 LOOP
        WHILE cardinality(result) + 1 < (diff -> 'i' ->> j)::int AND k <= cardinality(kept) LOOP
            result := result || kept[k];
            k := k + 1;
        END LOOP;
        IF NOT remove[(diff -> 'r' ->> j)::int] = ANY(kept) THEN
            result := result || remove[(diff -> 'r' ->> j)::int]::varchar;
        END IF;
    END LOOP;
    RETURN result || kept[k:];
END
$$;

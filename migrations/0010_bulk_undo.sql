-- The undo history of bulk actions (POST /api/pmd/actions/{id}/undo, 24 hours): one row per
-- action that changed posts, and for each changed post the values the action found (`after`
-- false) and the values it wrote (`after` true), in the action's own statement. Undo puts back
-- the first only where the post still holds the second: a post changed since (by the host's
-- edit or another action) is left as it is, and one changed and changed back is not "changed"
-- (undoing two actions in reverse order works). No foreign key to the host's posts (see
-- 0001); the daily cleanup drops rows past 24 hours.
CREATE TABLE bulk_actions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id      integer NOT NULL,
    actor_id      integer,  -- the moderator; NULL for the owner's own action
    action        varchar(20) NOT NULL,
    changed_count integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    undone_at     timestamptz
);
CREATE INDEX bulk_actions_created_idx ON bulk_actions (created_at);

CREATE TABLE bulk_action_posts (
    -- No foreign key: its check cost a third of a 10,000-post action's statement (one trigger
    -- call per row); the rows are written with their action's and purged with it.
    action_id            uuid NOT NULL,
    post_id              integer NOT NULL,
    after                boolean NOT NULL,
    hidden_by_user       boolean NOT NULL,
    hidden_by_mod        boolean NOT NULL,
    deleted_by_user      boolean NOT NULL,
    deleted_by_user_date timestamptz,
    license_id           integer,
    remixable            boolean NOT NULL,
    hashtags             varchar[] NOT NULL,
    PRIMARY KEY (action_id, post_id, after)
);

-- A post's tags after a bulk tags action, as the host's own edit makes them
-- (api/app/routers/posts.py update_post): the artist's tags, then the moderator's, which the
-- artist never removes; `add` and `remove` come normalised (posts/host_rules.py).
CREATE FUNCTION pmd_tags_after(tags varchar[], mod_tags varchar[], add text[], remove text[])
RETURNS varchar[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(t ORDER BY o), '{}')::varchar[] FROM (
        SELECT t, n AS o FROM unnest(tags) WITH ORDINALITY AS u(t, n)
        WHERE NOT (t = ANY(remove) AND NOT t = ANY(mod_tags))
        UNION ALL
        SELECT a, cardinality(tags) + n FROM unnest(add) WITH ORDINALITY AS v(a, n)
        WHERE NOT a = ANY(tags)
    ) AS kept(t, o)
$$;

-- How many of a post's tags are the artist's own (the host caps those at 64).
CREATE FUNCTION pmd_artist_tag_count(tags varchar[], mod_tags varchar[])
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT count(*)::integer FROM unnest(tags) AS t WHERE NOT t = ANY(mod_tags)
$$;

-- Posts a moderator deleted. The host's posts have no deleted_by_mod column (its own PMD sets
-- deleted_by_user for a moderator's delete too), so without this the owner could restore a
-- post a moderator removed. Written in the same statement as the delete; a moderator's restore
-- removes the row. No foreign key to the host's posts (see 0001); the daily cleanup drops rows
-- whose post is gone or no longer deleted.
CREATE TABLE moderator_deletions (
    post_id    integer PRIMARY KEY,
    owner_id   integer NOT NULL,
    deleted_by integer NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX moderator_deletions_owner_idx ON moderator_deletions (owner_id);
